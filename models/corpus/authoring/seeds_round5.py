"""Fifth round of seeds, from the held-out families' mistakes (never from the dev
sets): worry about running dry versus having run dry, distances to landmarks (other
apps), recall questions about named parts, sign-offs, complaints about repeat faults,
and everyday cabin commands that must not sound like emergencies."""

SLOTS5 = {
    "part": ["fuel pump", "airbags", "brakes", "seatbelts", "steering", "battery", "software", "door locks", "headlights", "gearbox"],
    "landmark": ["mount everest", "the moon", "the eiffel tower", "mars", "the sun", "the equator", "the north pole"],
}

ROUND5 = {
"fuel_level": [("-", "are we about to run out of fuel"), ("-", "i'm worried we'll run out of petrol"), ("n", "what's the fuel gauge reading"),
  ("n", "how long can i drive on battery only"), ("n", "how far can i go in electric mode"), ("n", "is there enough fuel for the journey"),
  ("-", "please say we're not running out of gas"), ("n", "what's the remaining fuel")],
"fuel_type": [("n", "which fuel should i put in my {car}"), ("n", "can it run on biodiesel"), ("n", "is super petrol right for this car"),
  ("n", "the attendant asked which fuel, what do i say"), ("n", "does it take regular or premium fuel")],
"fuel_economy": [("n", "how do i save fuel when driving"), ("n", "ways to be more fuel efficient"), ("n", "am i driving efficiently")],
"recall_warranty": [("n", "is there a recall on the {part}"), ("n", "any recall for the {part}"), ("n", "is the {part} covered by warranty"),
  ("n", "is there a technical service bulletin for my car"), ("n", "any manufacturer campaigns for my car"),
  ("-", "the {part} failed, is there a recall")],
"complaint": [("-", "the same fault came back after the repair"), ("-", "they said it was fixed but it isn't"),
  ("-", "nothing but problems since i bought it"), ("-", "they promised a loan car and never gave me one"),
  ("-", "the dealer keeps making excuses"), ("-", "i'm sick of taking it back for the same issue"), ("-", "the repair was rubbish")],
"goodbye": [("n", "over and out"), ("n", "catch you later"), ("n", "that's it for now"), ("n", "that's it"), ("n", "speak soon"),
  ("n", "all done, bye"), ("n", "right, i'm off")],
"greeting": [("n", "are you there car"), ("n", "is anybody listening"), ("n", "you there"), ("n", "hello, are you on")],
"oil_change_how": [("n", "can i do an oil change at home"), ("n", "how much oil do i put in"), ("n", "is changing the oil myself easy")],
"repeat": [("n", "eh what"), ("n", "huh, say again"), ("n", "slower please"), ("n", "could you say it slower")],
"affirm": [("n", "of course, go ahead"), ("n", "yes of course"), ("n", "absolutely yes"), ("n", "okay sure")],
"deny": [("n", "that won't work for me"), ("n", "not this time thanks"), ("n", "no, that doesn't suit me")],
"distance": [("n", "when will we get to {place2}"), ("n", "what time will we arrive at {place2}"), ("n", "arrival time")],
"book_service": [("n", "book a wheel alignment"), ("n", "schedule the recall repair at the dealer"), ("n", "book the car in for the recall work")],
}

OOS_ROUND5 = [
 ("n", "how far away is {landmark}"), ("n", "how far is it to {landmark}"), ("n", "how long would it take to fly to {landmark}"),
 ("n", "cool the cabin down"), ("n", "pre-heat the car"), ("n", "turn on the climate control"), ("n", "air con on full"),
 ("n", "how do i parallel park"), ("n", "how do electric cars work"), ("n", "how does a turbo work"), ("n", "explain how brakes work"),
 ("n", "how fast am i driving"), ("n", "what's my speed"), ("n", "louder please"), ("n", "quieter"), ("n", "play the traffic news"),
 ("n", "what currency do they use in {lang_country}"), ("n", "what's this car worth"), ("n", "hmm let me think"), ("n", "uh"),
 ("n", "what's for dinner tonight"), ("n", "schedule a doctor's appointment"), ("n", "book a vet appointment"), ("n", "rewind"),
 ("n", "is anyone out there"), ("n", "what's the population of {lang_country}"),
]
