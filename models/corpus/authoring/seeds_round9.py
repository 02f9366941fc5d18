"""Ninth round: what a recogniser hands over when nobody asked the car anything:
mumbles and hesitations on their own, nonsense words, mic checks, sung or hummed
fragments from the radio, and words cut off mid-way. None of it carries an intent,
so all of it is out of scope; the dialogue asks the driver to say it again."""

OOS_ROUND9 = [
 # hesitations and noises on their own
 ("n", "uhhh"), ("n", "ermmm"), ("n", "um er um"), ("n", "mmm mmm"), ("n", "ah ah ah"), ("n", "pfft"), ("n", "brrr"),
 ("n", "shh shh"), ("n", "nnnng"), ("n", "ho hum"), ("n", "tsk tsk"), ("n", "whew"),
 # nonsense words
 ("n", "yadda yadda yadda"), ("n", "jibber jabber"), ("n", "gobbledygook"), ("n", "hocus pocus"), ("n", "abracadabra"),
 ("n", "fiddle faddle"), ("n", "dibble dabble doo"), ("n", "snorkel bingo wumpus"), ("n", "frobnicate the splunge"),
 ("n", "higgledy piggledy"), ("n", "kerfuffle"), ("n", "hullabaloo"), ("n", "ooga booga"), ("n", "skibidi bop"),
 ("n", "quux quux"), ("n", "zoop zap zibble"), ("n", "nerp derp"), ("n", "plonk splat"), ("n", "boing boing"),
 ("n", "wizzle wozzle"), ("n", "trundle snoot"),
 # mic checks and letters
 ("n", "testing testing one two three"), ("n", "mic check one two"), ("n", "a b c d e f g"), ("n", "one two one two"),
 ("n", "check check"), ("n", "x y z"),
 # the radio or a passenger singing
 ("n", "ooh la la ooh"), ("n", "shoo be doo wop"), ("n", "baby baby baby oh"), ("n", "doo doo doo da da"),
 ("n", "hey hey hey oh oh"), ("n", "tra la la la"),
 # words cut off mid-way
 ("n", "the the the"), ("n", "and then uh"), ("n", "i was gonna"), ("n", "can you um uh"),
 ("n", "what was i going to say"),
]
