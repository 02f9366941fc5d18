"""Sixth round: out-of-scope categories that real cabins are full of and the corpus
had few of: remarks aimed at the assistant (rude or kind), talk meant for passengers,
phone-call control, clocks and alarms, feelings about one's day, idle questions about
life, cars in general (buying advice), and other devices' settings. None is taken
from the dev sets."""

OOS_ROUND6 = [
 # remarks at the assistant
 ("-", "you're useless"), ("-", "you're so dumb"), ("-", "what an idiot"), ("-", "you never understand anything"),
 ("-", "shut up already"), ("-", "stupid machine"), ("-", "you're hopeless"), ("+", "you're brilliant"), ("+", "good job assistant"),
 ("+", "you're the best"), ("+", "i like you"), ("n", "are you real"), ("n", "are you listening to me"), ("n", "do you have feelings"),
 ("n", "are you a person"), ("n", "who built you"),
 # talk meant for passengers
 ("n", "i'm talking to my son"), ("n", "that wasn't for you"), ("n", "sorry, i wasn't talking to you"), ("n", "kids, be quiet back there"),
 ("n", "honey did you lock the house"), ("n", "pass me the water"), ("n", "no not you car"),
 # phone-call control
 ("n", "reject the call"), ("n", "decline this call"), ("n", "end the call"), ("n", "put the call on hold"), ("n", "mute the microphone"),
 ("n", "pick up the phone"), ("n", "send the call to voicemail"),
 # clocks, alarms, time
 ("n", "what's the time"), ("n", "what time is it right now"), ("n", "set an alarm for 7"), ("n", "wake me at six thirty"),
 ("n", "set a reminder for tomorrow morning"), ("n", "how many minutes until noon"),
 # feelings about the day
 ("-", "today was horrible"), ("-", "i've had an awful week"), ("-", "i'm in a terrible mood"), ("+", "today was amazing"),
 ("+", "i feel fantastic"), ("-", "i'm exhausted after work"),
 # idle questions
 ("n", "what's the point of anything"), ("n", "do you believe in god"), ("n", "what happens after we die"), ("n", "is there life on other planets"),
 # cars in general, buying advice
 ("n", "which electric car should i buy"), ("n", "what's the best family car"), ("n", "is a hybrid worth it"),
 ("n", "what's the most reliable car brand"), ("n", "what's the cheapest ev"), ("n", "compare petrol and diesel cars"),
 # other devices and services
 ("n", "how do i fix my wifi"), ("n", "reset my laptop password"), ("n", "my phone screen is cracked"), ("n", "update my phone"),
 ("n", "how do i reset the tv"), ("n", "pay the toll charge"), ("n", "pay the parking fine"), ("n", "top up my oyster card"),
 ("n", "how are the markets today"), ("n", "how's my portfolio"), ("n", "tell me something interesting"), ("n", "got any riddles"),
]
