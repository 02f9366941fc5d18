"""Seventh round: feelings said the way drivers say them, inside the request rather
than wrapped around it. Earlier rounds carried most negative and positive lines as
a neutral request with a stock prefix or suffix ("ugh ...", "... love it"), so the
sentiment head learned the wrappers and leaned on topic words (traffic, lights,
toilets) for the rest. Here the feeling lives in the situation: a problem the driver
is in, worry, impatience, confusion, self-blame, relief and real pleasure; and for
every topic there are calm, neutral phrasings too. It also adds phrasings for the
requests the held-out families showed were thin (arrival times, sign-offs, feature
settings, formal complaints). Written by the team; nothing here is taken from the
dev sets."""

SLOTS7 = {
    "town": ["london", "paris", "york", "oxford", "brighton", "boise", "tucson", "reno", "dover", "calais",
             "frankfurt", "dublin", "houston", "miami", "ottawa", "perth"],
    "setting": ["the language", "the units to kilometres", "the units to miles", "the clock", "the display brightness",
                "the home address", "the voice of the assistant", "the ringtone", "the date format", "the time zone"],
}

ROUND7 = {
"fuel_level": [
  ("-", "the low fuel warning just came on and i'm miles from anywhere"), ("-", "i forgot to fill up and now i'm nervous"),
  ("-", "the needle is right at the bottom, how far have i got"), ("-", "we're running on fumes here"),
  ("-", "i think i'm going to run dry before the next exit"), ("-", "battery's nearly flat, can i still get home"),
  ("-", "i'm worried the charge won't last to {town}"), ("n", "what does the range say"), ("n", "range remaining please"),
  ("n", "how full is the tank"), ("n", "what percentage is the battery at"), ("n", "is the tank half full yet"),
  ("n", "how many kilometres can i do before i need {fuel}"), ("n", "do i need to stop for {fuel} before {town}"),
  ("+", "great, the tank is full, how far will that get me"), ("+", "just filled her up, what's the range now"),
  ("n", "estimated range on the current charge"), ("n", "how many more miles on this tank"),
  ("-", "please tell me i have enough {fuel} to get there"), ("n", "how low am i on {fuel}"),
],
"fuel_type": [
  ("-", "i'm at the pump and i honestly can't remember which {fuel} it takes"), ("-", "i think i put the wrong fuel in, what should it have been"),
  ("n", "what's the right octane for my {car}"), ("n", "which nozzle do i use, green or black"), ("n", "what kind of charger plug does it use"),
  ("n", "can i use e10"), ("n", "is ninety one octane enough"), ("n", "does it run on unleaded"),
  ("+", "nice new car, what fuel does it run on"), ("n", "is it diesel or petrol"), ("n", "what grade of gasoline should i buy"),
  ("-", "the pump only has diesel, can i use it"), ("n", "does my hybrid need premium fuel"),
],
"fuel_economy": [
  ("-", "my fuel bills are through the roof, what am i averaging"), ("-", "the economy seems terrible lately, what's it showing"),
  ("-", "why am i burning so much {fuel}"), ("+", "i've been driving really smoothly, how's my economy looking"),
  ("+", "loving how little fuel this uses, what's the average"), ("n", "what's my average consumption this trip"),
  ("n", "how many {unit_econ} since the last reset"), ("n", "what's the efficiency on this journey"), ("n", "energy usage per mile"),
  ("n", "show me my consumption"), ("n", "how economical is my driving"), ("n", "how much energy am i using per 100 km"),
  ("-", "it's guzzling fuel, what's the mpg"),
],
"tire_pressure": [
  ("-", "the car feels like it's pulling to one side, are my {tires} low"), ("-", "i think i've got a slow puncture, what are the pressures"),
  ("-", "the tyre light keeps coming back, which one is low"), ("n", "psi on all four please"), ("n", "pressure in the rear {tires}"),
  ("n", "what bar should the {tires} be at"), ("n", "are the {tires} inflated properly"), ("n", "is any {tire} losing air"),
  ("+", "just pumped up the {tires}, are they all good now"), ("n", "recommended {tire} pressure for a full load"),
  ("-", "one of my {tires} looks flat, how's the pressure"), ("n", "check my tyre pressures"),
],
"warning_light": [
  ("-", "a light i've never seen before just popped up and i'm worried"), ("-", "there's a scary red symbol on the dash"),
  ("-", "something is flashing on the dashboard and i don't know what it means"), ("n", "what's the {colour} symbol next to the speedo"),
  ("n", "what does {shape} on the dashboard mean"), ("n", "explain the {light} light"), ("n", "which warning light is that"),
  ("n", "a {colour} light came on, what is it"), ("-", "the {light} warning won't go away"), ("n", "what is the icon that looks like {shape}"),
  ("+", "phew the light went off, what was it anyway"), ("n", "there's a new symbol on the cluster"),
  ("n", "what does the message on the instrument panel mean"),
],
"vehicle_health": [
  ("-", "the car is making a weird knocking noise, is something wrong"), ("-", "it's shaking when i brake, is the car okay"),
  ("-", "there's a burning smell, is anything faulty"), ("-", "it feels sluggish today, any problems"),
  ("n", "run a health check on the car"), ("n", "are there any faults stored"), ("n", "do a quick diagnostic"), ("n", "any trouble codes"),
  ("n", "is everything working as it should"), ("+", "the car has been running beautifully, any issues i should know about"),
  ("n", "give me a status report on the car"), ("n", "what's the code {dtc}"), ("-", "i'm nervous about this noise, is the car safe to drive"),
],
"oil_change_when": [
  ("-", "i think i've missed the oil change, is it overdue"), ("-", "i completely lost track of the oil service"),
  ("n", "how long until the oil needs changing"), ("n", "next oil service due date"), ("n", "how many miles until the oil change"),
  ("n", "when should i get the oil done"), ("n", "oil life remaining"),
  ("+", "the car's been great, when is it due for oil"), ("n", "does the oil need doing before winter"),
],
"oil_change_how": [
  ("-", "i've never checked oil in my life, how do i do it"), ("-", "the dipstick is confusing me, how do i read it"),
  ("n", "where do i pour the oil in"), ("n", "what viscosity oil does the engine need"), ("n", "which engine oil should i buy"),
  ("n", "where is the oil filler cap"), ("n", "what's the oil capacity of the engine"),
  ("n", "how do i change the oil filter"), ("+", "i'd love to learn to check the oil myself, how"),
],
"tire_change": [
  ("-", "i've got a flat and no idea how to put the spare on"), ("-", "the {tire} blew out, how do i change it"),
  ("-", "i can't find the wheel wrench anywhere"), ("n", "where is the spare wheel kept"), ("n", "how do i use the tyre repair kit"),
  ("n", "where do i put the jack under the car"), ("n", "how do i get the locking wheel nut off"), ("n", "steps to swap a wheel"),
  ("n", "is there a spare {tire} in the {trunk}"), ("n", "how do i fit the space saver"),
],
"jump_start": [
  ("-", "the car won't start, i think the battery's dead, what do i do"), ("-", "i left the lights on overnight and it's completely dead"),
  ("-", "it just clicks when i turn the key"), ("n", "which terminal do the jumper cables go on first"), ("n", "where are the jump points"),
  ("n", "how do i use a jump pack"), ("n", "can someone jump me from their car"), ("n", "how do i boost the battery"),
  ("n", "what order do the jump leads go in"), 
],
"last_service": [
  ("-", "i can't remember when it was last serviced"), ("n", "date of the last service"), ("n", "what did they do at the last service"),
  ("n", "how long ago was the car serviced"), ("n", "when was the last inspection done"), ("n", "show the service history"),
  ("n", "when were the brakes last done"), ("n", "what mileage was the last service at"), ("+", "the last service was great, when was that again"),
],
"feature_howto": [
  ("-", "i can't work out how to turn the heated seats on"), ("-", "the screen menus are confusing, how do i set {feature}"),
  ("-", "my phone keeps disconnecting, how do i pair it again"), ("n", "how do i change {setting}"), ("n", "how do i set {setting}"),
  ("n", "where do i change {setting}"), ("n", "how do i add another phone"), ("n", "how do i switch on {feature}"),
  ("n", "how does {feature} work"), ("n", "how do i turn off the lane departure beeping"), 
  ("n", "how do i fold the mirrors"), ("n", "teach me how to use {feature}"), ("+", "i love {feature}, how do i customise it"),
  ("n", "how do i open the {trunk} from inside"), ("n", "how do i set up a driver profile"),
],
"current_location": [
  ("-", "i've got no idea what town this is"), ("n", "what's our current position"),
  ("n", "which county are we in"), ("n", "what road am i on"), ("n", "give me our coordinates"), ("n", "what's the nearest town to here"),
  ("n", "what area is this"), ("n", "where exactly are we parked"), ("n", "which exit did we just pass"),
],
"greeting": [
  ("n", "hey there assistant"), ("n", "hello car"), ("n", "morning"), ("n", "good afternoon"), ("n", "yo"), ("n", "evening car"),
  ("+", "hi there, lovely to hear you"), ("+", "good morning, beautiful day"), ("n", "hello is this on"), ("n", "hiya"),
],
"goodbye": [
  ("n", "we're done"), ("n", "nothing else thanks"), ("n", "no more questions"), ("n", "see you"),
  ("+", "thanks a lot, that sorted it"), ("+", "you've been a great help, bye"), ("+", "brilliant, that's all for today"),
  ("n", "okay, goodbye"), ("n", "end the session"), ("n", "finished for now"), ("n", "i'm all set"),
],
"book_service": [
  ("-", "the brakes are grinding, i need to get it booked in asap"), ("-", "i've been putting off the service, please book it"),
  ("n", "can i get a slot at the garage on {day}"), ("n", "put me down for {service} on {day}"), ("n", "arrange {service} for {day} at {time}"),
  ("n", "move my service appointment to {day}"), ("n", "reschedule my booking"), ("n", "i need to book the car in"),
  ("n", "is there availability for {service} {day}"), ("+", "great, let's get {service} sorted for {day}"),
  ("n", "can the dealer see the car {day}"), ("n", "change my appointment time to {time}"),
],
"roadside_assistance": [
  ("-", "the car just died on the hard shoulder"), ("-", "i've locked the keys inside the car"), ("-", "i ran out of {fuel} on {road}"),
  ("-", "the engine cut out and won't restart, i need help"), ("-", "i'm stranded with a flat and no spare"),
  ("n", "send a recovery truck"), ("n", "i need breakdown cover"), ("n", "call roadside assistance"), 
  ("-", "stuck in a ditch, need someone to pull me out"), ("n", "i need a mechanic to come out to me"),
],
"emergency": [
  ("-", "we've just crashed"), ("-", "someone's been hit by a car"), ("-", "{who} {medical}"), ("-", "there's smoke coming from under the bonnet and flames"),
  ("-", "i've been in a collision and i'm hurt"), ("-", "call emergency services now"), ("-", "get an ambulance"),
  ("-", "there's a man lying in the road"), ("-", "my car rolled over"), ("-", "someone is trying to break into the car with me inside"),
  ("-", "i'm being followed and i'm scared"), ("-", "we hit a deer and my passenger is bleeding"),
],
"talk_to_agent": [
  ("-", "you're not helping, i need a real person"), ("-", "i've asked three times, put me through to someone"),
  ("n", "connect me with the call centre"), ("n", "i'd like to talk to a human please"),
  ("n", "transfer me to an advisor"), ("n", "get me a person on the line"), ("+", "thanks, but i'd rather chat with a person"),
],
"complaint": [
  ("-", "i want to lodge a formal complaint"), ("-", "i'm very disappointed with how the dealer treated me"),
  ("-", "the garage scratched my car and won't admit it"), ("-", "they charged me for work they never did"),
  ("-", "i've waited three weeks for a part, it's unacceptable"), ("-", "the customer service has been appalling"),
  ("-", "this car has been a lemon from day one"), ("-", "the salesperson misled me about the range"),
  ("-", "i want my money back"), ("-", "who do i complain to about the service centre"),
],
"recall_warranty": [
  ("-", "i'm worried there's a recall on my {part}"), ("n", "is my car affected by any recalls"), ("n", "how long is the warranty"),
  ("n", "is the {part} still under warranty"), ("n", "when does my warranty run out"), ("n", "does the warranty cover the battery"),
  ("n", "are there open safety campaigns for this vin"), ("+", "good to know, is it still covered by warranty"),
],
"directions": [
  ("-", "i've missed the turning again, get me back on track"), ("-", "i'm lost, just take me to {dest}"),
  ("n", "navigate home"), ("n", "set the destination to {town}"), ("n", "directions to {dest} please"), ("n", "plot a route to {town}"),
  ("n", "take me to the nearest exit for {town}"), ("n", "start guidance to {dest}"), ("n", "avoid the motorway on the way to {dest}"),
  ("+", "lovely, now take me to {dest}"), ("n", "head for {town}"), ("n", "get me to {dest} the fastest way"),
],
"distance": [
  ("-", "we're late, when will we get to {dest}"), ("-", "the kids are restless, how much longer"), ("n", "what's our eta"),
  ("n", "how long until we arrive"), ("n", "how many miles to {town}"), ("n", "when do we reach {town}"), ("n", "when will we reach {dest}"),
  ("n", "how far away is {dest}"), ("n", "distance remaining to the destination"), ("n", "how many kilometres left on the route"),
  ("n", "what time do we get in"), ("+", "this is a lovely drive, how far to {town}"), ("n", "journey time to {town}"),
],
"traffic": [
  ("n", "what's traffic like on {road}"), ("n", "is the road ahead clear"),
  ("n", "are there roadworks on {road}"), ("n", "is it busy on the motorway"), ("n", "congestion ahead"),
  ("n", "will traffic slow us down"), ("+", "nice, the roads are quiet, is it clear all the way"), ("n", "traffic report for my route"),
  ("-", "we've been crawling for an hour, is there a jam ahead"), ("n", "any road closures near {town}"),
],
"find_place": [
  ("n", "where's the nearest {place}"), ("n", "find a {place} near here"), ("n", "is there a {place} close by"),
  ("n", "show me {place}s on the way"), ("-", "i'm desperate for a coffee, where's the closest cafe"),
  ("-", "the kids need the loo urgently, where's the nearest toilet"), ("n", "any fast chargers nearby"),
  ("+", "i fancy a nice lunch, any good places near here"), ("n", "closest {place} please"),
],
"affirm": [
  ("n", "yep"), ("n", "that's right"), ("n", "correct"), ("n", "yes that one"), ("n", "go for it"), ("n", "please do"),
  ("+", "yes, that would be wonderful"), ("+", "oh yes please, thank you"), ("n", "fine, do it"), ("n", "ok go ahead"),
  ("n", "affirmative"), ("n", "sounds good"),
],
"deny": [
  ("n", "nah"), ("n", "i don't want that"), ("n", "no, not now"), ("n", "wrong, no"), ("n", "negative"),
  ("-", "no, that's not what i asked"), ("-", "no no no"), ("n", "not needed"), ("n", "no, leave it as it is"),
  ("+", "no thanks, i'm happy as i am"),
],
"cancel": [
  ("n", "stop"), ("n", "never mind"), ("n", "abort"), ("n", "cancel the request"), ("n", "drop it"), ("n", "ignore that"),
  ("n", "scrap that"), ("-", "stop, that's wrong, cancel it"), ("n", "call it off"), ("n", "forget about it"), ("n", "stop the booking"),
],
"repeat": [
  ("n", "pardon"), ("n", "sorry, what was that"), ("n", "come again"), ("n", "i missed that"),
  ("n", "can you say it one more time"), ("-", "i couldn't hear you over the kids, again please"), ("n", "what was the answer again"),
  ("n", "tell me that again"),
],
}

OOS_ROUND7 = [
 # media, climate, phone, messages: other apps', with feelings
 ("-", "this song is awful, skip it"), ("+", "i love this song, turn it up"), ("-", "it's freezing in here"), ("-", "it's boiling, cool it down"),
 ("n", "open the sunroof"), ("n", "close the windows"), ("n", "text my wife i'm running late"), ("-", "call my boss, i'm going to be late again"),
 ("n", "read my messages"), ("n", "play some podcasts"), ("+", "play my favourite playlist"), ("n", "next track"),
 ("n", "turn the fan down"), 
 # weather, news, knowledge
 ("n", "what's the forecast for {town}"), ("-", "this weather is miserable, will it clear up"),
 ("n", "what's the news today"), ("n", "how tall is the eiffel tower"),
 ("n", "what year did the war end"), ("n", "translate thank you into spanish"), ("n", "spell necessary"),
 ("n", "what's 15 percent of 80"), ("n", "convert 50 miles to kilometres"),
 # shopping, finance, travel, food
 ("n", "order some flowers for my mum"), ("n", "book a table for two tonight"), ("n", "book me a flight to {town}"),
 ("n", "get me an uber"), ("n", "rent a car in {town}"), ("n", "what's my bank balance"),
 ("n", "add milk to the shopping list"), ("n", "order a pizza to the house"), ("n", "book a hotel in {town}"),
 # cabin talk, feelings, chit-chat
 ("-", "i'm so tired today"), ("-", "my day has been rubbish"), ("+", "i got the job"),
 ("+", "we're going on holiday"), ("+", "what a beautiful sunset"), ("-", "i'm bored"), ("n", "tell me a story"),
 ("n", "sing me a song"), ("n", "what's your name"), ("n", "how old are you"), ("+", "you're funny"), ("-", "you're annoying me"),
 ("n", "do you like cats"), ("n", "what's your favourite colour"), ("-", "the kids are driving me crazy"),
 ("-", "stop talking"), ("n", "be quiet for a bit"), ("n", "what can you do"), ("n", "flip a coin"), ("n", "roll a dice"),
 # smart home, calendar, other devices
 ("n", "open the garage door"), ("n", "lock the front door at home"),
 ("n", "what's on my calendar today"), ("n", "move my meeting to three"), ("n", "set a timer for ten minutes"),
 ("n", "how do i update my phone's software"), ("n", "my laptop won't turn on"),
 # car-adjacent but owned by other apps or nobody
 ("n", "how much is car insurance"), ("n", "what's my car worth as a trade in"), ("n", "how do i sell my car"),
 ("n", "what's the speed limit here"), ("n", "record a video with the dashcam"), ("n", "how much horsepower does a ferrari have"),
 ("n", "who makes the best tyres"), ("n", "what's the fastest car in the world"), ("-", "my neighbour's car alarm kept me up all night"),
 ("n", "how do i get a driving licence"), ("n", "renew my road tax"), ("n", "pay for parking"),
]
