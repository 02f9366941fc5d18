"""Fourth round of seeds (none taken from the dev sets): range and "will I make it" questions, yes/no said many ways,
breakdowns, navigation commands with named places, plain general-knowledge questions
(which belong to other apps), and more real positives. Sentiment: n neutral, - negative, + positive."""

SLOTS4 = {
    "animal": ["a spider", "a cat", "an octopus", "a horse", "an ant", "a dog"],
    "thing": ["the sun", "the earth", "mount everest", "the pacific ocean", "the great wall of china", "a blue whale", "the amazon river"],
    "place2": ["london", "paris", "the coast", "the lake district", "yosemite", "the mountains", "my parents' house", "the conference centre",
               "the dentist", "the garden centre", "the ferry", "the motorway services"],
}

ROUND4 = {
"fuel_level": [("n", "how far will the fuel get me"), ("n", "can i reach {place2} on what's in the tank"), ("n", "how many miles of gas left"),
  ("n", "is the tank low"), ("n", "do i need to refuel before {place2}"), ("n", "what's left on the battery"), ("n", "how many litres are in the tank"),
  ("n", "fuel range"), ("n", "will the charge get us to {place2}"), ("-", "please tell me we have enough petrol to get home"),
  ("n", "need to fill up or are we good"), ("n", "how much distance can i cover before refuelling")],
"fuel_economy": [("n", "how many litres per hundred am i using"), ("n", "what's the consumption right now"), ("n", "how economical is my driving"),
  ("n", "average miles per gallon")],
"tire_change": [("n", "is there a spare wheel in this car"), ("n", "how do i use the tyre sealant kit"), ("n", "where's the inflator and sealant"),
  ("n", "does it come with a spare or a repair kit")],
"roadside_assistance": [("-", "the car has broken down"), ("-", "we've broken down"), ("-", "my car stopped working in the middle of the road"),
  ("n", "i need a mechanic to come out to me"), ("n", "send a recovery vehicle"), ("-", "the engine cut out and it won't restart"),
  ("-", "i'm stuck, car won't go")],
"directions": [("n", "drive me to {place2}"), ("n", "head to {place2}"), ("n", "navigate to {place2}"), ("n", "go to {place2}"),
  ("n", "route to {place2}"), ("n", "take us to {place2}"), ("n", "plot a route to {place2}"), ("n", "set the sat nav for {place2}")],
"distance": [("n", "how far is {place2}"), ("n", "how long to drive to {place2}"), ("n", "when will we reach {place2}")],
"affirm": [("n", "yeah, go on"), ("n", "sure thing, yes"), ("+", "oh yes, brilliant"), ("n", "alright, do it"),
  ("n", "okay then, yes"), ("+", "yes, lovely"), ("n", "yes, book it")],
"deny": [("n", "no, i'm okay"), ("n", "not at the moment"), ("n", "no, i'll leave it"), ("n", "no, that's fine"),
  ("n", "no, don't bother"), ("n", "not right now, no"), ("n", "i'm fine, no thanks")],
"goodbye": [("+", "cheers"), ("+", "ta"), ("+", "thanks a million"), ("n", "okay, bye bye"), ("+", "thanks, you're a star"), ("n", "goodbye for now")],
"vehicle_health": [("n", "what's wrong with the car"), ("n", "does the car have a problem"), ("n", "is anything wrong with the engine"),
  ("n", "car diagnostics")],
"talk_to_agent": [("n", "get me a person"), ("n", "i need a person"), ("n", "human agent"), ("n", "customer support please")],
"emergency": [("-", "something is burning under the hood"), ("-", "the engine is burning"), ("-", "it's burning, we need to get out"),
  ("-", "flames everywhere, the car is burning up"), ("-", "i can see fire coming from the engine"), ("-", "the dashboard is smoking and sparking"),
  ("-", "{who} fell unconscious"), ("-", "{who} is slumped over and not responding")],
"cancel": [("n", "never mind that, cancel"), ("n", "cancel my request"), ("n", "stop it")],
}

OOS_ROUND4 = [
 ("n", "how long does {animal} live"), ("n", "what does {animal} eat"),
 ("n", "how big is {thing}"), ("n", "how old is {thing}"), ("n", "how far away is {thing}"), ("n", "tell me about {thing}"),
 ("n", "what's the tallest building in the world"), ("n", "who discovered gravity"), ("n", "what is photosynthesis"),
 ("n", "how many bones are in the human body"), ("n", "what language do they speak in brazil"), ("n", "when did the berlin wall fall"),
 ("n", "email {contact}"), ("n", "send an email to {contact}"), ("n", "call {contact} on speaker"), ("n", "video call {contact}"),
 ("n", "is the library open"), ("n", "what time does the bank open"), ("n", "when does the supermarket close"),
 ("n", "sing a song"), ("n", "play happy birthday"), ("n", "tell me a poem"), ("n", "say something nice"),
 ("n", "what's the weather like in {place2}"), ("n", "will it be windy tomorrow"), ("n", "temperature tomorrow"),
 ("+", "i'm having such a good day"), ("+", "this is the best road trip ever"), ("+", "the kids are so happy today"),
 ("-", "i had a fight with my partner"), ("-", "i'm so bored of this drive"), ("-", "my team is terrible this season"),
 ("n", "turn the radio to bbc"), ("n", "play the traffic news"), ("n", "volume up a bit"), ("n", "change the song"),
 ("n", "heat up the car"), ("n", "cool it down in here"), ("n", "open all the windows"), ("n", "close the sunshade"),
]
