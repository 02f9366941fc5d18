"""Eighth round, from the held-out families' mistakes after round seven (never from
the dev sets): commands versus how-to questions (a cabin command is another app's,
asking how a feature works is ours), hand-offs that mention "someone" without any
danger, sign-offs, short dialogue acts, arrival questions that are not about fuel,
range questions that name a place, oil quantities, and breakdowns far from help."""

SLOTS8 = {
    "gadget": ["my phone", "my laptop", "my watch", "the tablet", "my headphones", "the smart speaker", "my kindle"],
    "coin": ["bitcoin", "the stock market", "the dollar", "gold", "the ftse", "the nasdaq", "ethereum"],
}

ROUND8 = {
"feature_howto": [
  ("n", "how do i turn the {feature} on"), ("n", "how can i switch off {feature}"), ("n", "what's the button for {feature}"),
  ("n", "show me how {feature} works"), ("n", "how do i connect a second phone"), ("n", "how do i remove a paired phone"),
  ("n", "how do i make the screen darker at night"), ("n", "where's the setting for {feature}"), ("n", "can you explain {feature} to me"),
  ("-", "i keep pressing buttons and {feature} won't come on, how does it work"), ("n", "how do i adjust the seat memory"),
  ("n", "how do i change the units on the display"), ("n", "what does the auto button on the gear selector do"),
],
"talk_to_agent": [
  ("n", "pass me over to someone who can help"), ("n", "hand this over to a person"), ("n", "get someone from the company on the line"),
  ("n", "i want someone from customer care"), ("n", "put me in touch with the service advisor"), ("n", "can a human take over"),
  ("-", "enough of the bot, get me someone"), ("n", "i need to speak with someone about my account"), ("n", "let me chat with support"),
],
"goodbye": [
  ("n", "that'll be all"), ("n", "that's all from me"), ("n", "ok that's it then"), ("n", "bye for now"), ("n", "signing off"),
  ("n", "talk later"), ("n", "i'm good, bye"), ("+", "cheers, that's everything"), ("n", "ok done"), ("n", "later"),
],
"greeting": [
  ("n", "hi assistant"), ("n", "hey you there"), ("n", "good evening"), ("n", "hey car are you awake"), ("n", "wake up"),
  ("n", "hello hello"), ("n", "ok car"),
],
"affirm": [
  ("n", "okay"), ("n", "ok"), ("n", "alright then"), ("n", "yes, book it"), ("n", "sure thing"), ("n", "yeah that works"),
  ("n", "definitely"), ("+", "absolutely, yes"), ("n", "i agree"), ("n", "that's fine"), ("n", "yes do that"),
],
"deny": [
  ("n", "no thank you"), ("n", "not that one"), ("n", "that's incorrect"), ("n", "no, wrong one"), ("n", "i'd rather not"),
  ("n", "don't bother"), ("n", "no, skip that"), ("n", "neither"),
],
"cancel": [
  ("n", "cancel"), ("n", "disregard that"), ("n", "stop that"), ("n", "undo that"), ("n", "never mind, forget it"),
  ("n", "don't do it after all"), ("n", "halt"), ("n", "quit"), ("n", "cancel everything"),
],
"repeat": [
  ("n", "again please"), ("n", "say what"), ("n", "what did you just say"), ("n", "one more time"), ("n", "didn't catch that"),
  ("n", "repeat the last bit"),
],
"distance": [
  ("n", "how much further to {town}"), ("n", "when are we going to arrive in {town}"), ("n", "what time will we reach {dest}"),
  ("n", "how many miles until we're there"), ("n", "how long is the rest of the drive"), ("n", "are we nearly there"),
  ("n", "how far have we still got to go"), ("-", "this is taking forever, how long till {dest}"), ("n", "time to destination"),
],
"directions": [
  ("n", "guide me to {dest}"), ("n", "head to {town}"), ("n", "get directions to {dest}"), ("n", "go to {dest}"),
  ("n", "set a course for {town}"), ("n", "which way to {dest}"), ("n", "find me the route to {town}"), ("n", "route me home"),
],
"fuel_level": [
  ("n", "will the {fuel} last until {town}"), ("n", "can i get to {town} without stopping for {fuel}"),
  ("n", "have i got enough charge to reach the next town"), ("n", "is the battery enough for the trip to {dest}"),
  ("-", "will i run out before the next services"), ("n", "how much electric range is left"), ("n", "what's the ev range"),
],
"oil_change_how": [
  ("n", "how much oil does it take"), ("n", "how many quarts of oil for a top up"),
  ("n", "how do i reset the oil reminder after changing it"), ("n", "how do i drain the old oil"),
],
"current_location": [
  ("n", "where is the car now"), ("n", "what street are we on"), ("n", "what neighbourhood is this"), ("n", "tell me where we are"),
  ("-", "where on earth are we"), ("n", "what's the address here"),
],
"roadside_assistance": [
  ("-", "the battery's flat and there's nobody around to help"), ("-", "i've run out of {fuel} and i'm stuck"),
  ("-", "broken down in the middle of nowhere"), ("-", "car won't move and i'm at the side of the road"),
  ("n", "send a breakdown van"), ("-", "i've got a puncture and can't change it myself"), ("n", "i need a jump from a patrol"),
],
"complaint": [
  ("-", "this car has given me nothing but grief"), ("-", "i'd like to make a formal complaint about the repair"),
  ("-", "i'm unhappy with the work done at the garage"), ("-", "the brakes still squeal after they fixed them, i'm not happy"),
  ("-", "i want to report bad service"), ("-", "they lied to me at the dealership"), ("-", "the quality of this car is shocking"),
],
"vehicle_health": [
  ("n", "is there anything wrong with the engine"), ("n", "are all systems ok"), ("-", "it's making a grinding sound, is it broken"),
  ("n", "check the car for problems"), ("n", "is the car healthy"),
],
"book_service": [
  ("n", "set up an appointment at the dealer"), ("n", "book a slot for {service}"), ("n", "i'd like to get {service} done {day}"),
  ("n", "can you book me in for {day} morning"),
],
"emergency": [
  ("-", "fire, the car's on fire"), ("-", "help, there's been an accident"), ("-", "someone's hurt, call 911"),
  ("-", "my child is not breathing"), ("-", "we need an ambulance right now"),
],
}

OOS_ROUND8 = [
 # cabin commands that other apps carry out
 ("n", "turn on {feature}"), ("n", "switch the heated seats on"), ("n", "heat the steering wheel"), ("n", "lock the doors"),
 ("n", "turn the interior light off"), ("n", "fold the mirrors"), ("n", "open the {trunk}"), ("n", "turn the wipers on"),
 # phone calls: calling a person is not an emergency
 ("n", "call my husband"), ("n", "ring my mum"), ("n", "call dave"), ("n", "dial my sister"),
 ("n", "call home"),
 # finance, gadgets, reminders
 ("n", "how is {coin} doing"), ("n", "what's the price of {coin}"), ("n", "how do i update {gadget}"), ("n", "charge {gadget}"),
 ("n", "set a reminder to buy milk"), ("n", "remind me to call the dentist"), ("n", "add an event to my calendar"),
 # speed, value, driving tips
 ("n", "how fast am i going"), ("n", "what's my current speed"), ("n", "what's this car worth now"), ("n", "resale value of my car"),
 ("n", "how do i reverse into a space"), ("n", "tips for driving in snow"),
 # health and feelings that are not emergencies
 ("n", "is coffee bad for you"), ("n", "how many calories in a banana"), ("-", "i'm scared of the dark"), ("n", "breathing exercises"),
 ("-", "i've got a headache"), ("n", "meditation music"), ("-", "i feel a bit sad"),
 # far-off distances and idle chat
 ("n", "how far is the earth from the sun"), ("n", "how far is the moon"), ("n", "is anyone out there"), ("n", "hmm ok"),
]
