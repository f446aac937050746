"""The word lists of the everyday word problems (`everyday.py`): people, things by kind, containers,
verbs of gaining / losing / making in present and past tense, and the details people add.

Plain data, no logic. Items carry a kind, so a total over two kinds has a word for both ("7 cats and
5 dogs" -> "animals") and a verb only meets things it fits (nobody eats a pencil). `HELDOUT_ITEMS`
occur only in the held-out family (test split), so their words never reach the tokenizer.
"""

from __future__ import annotations

_SHE = """Mia Ana Lily Zoe Eva Ivy Emma Olivia Sophia Ava Grace Chloe Nora Ella Maya Sara Lucy Hannah Rosa Amy
Julia Nina Kate Alice Yuki Lena Kim Anna Sofia Isla Ruby Leah Mila Aria Layla Zara Fatima Aisha Priya Mei Hana
Elena Clara Laura Megan Rachel Jenny Molly Holly Daisy Rose Jade Amber Ellie Sadie Paige Tara Vera Iris Nadia
Leila Maria Carmen Lina Emily Sarah Jessica Ashley Beth Diana Fiona Gina Helen Irene Joy Kara Lisa Mary Nancy
Olga Pam Quinn Rita Susan Tina Una Wendy Xena Yara Abby Bella Cora Dora Erin Faith Gemma Heidi""".split()
_HE = """Tom Ben Sam Max Leo Jack Noah Liam Lucas Ethan Owen Ryan Adam David John Omar Ali Paul Kevin Peter Mark
Carlos Daniel Jake Luke James Henry Oliver Jacob Mason Logan Elijah Aiden Caleb Dylan Evan Felix Gabe Hugo Ian
Joel Kai Leon Milo Nate Oscar Raj Rohan Sean Theo Victor Wyatt Yusuf Zack Aaron Brian Chris Eric Frank George
Harry Ivan Jason Karl Louis Matt Nick Pedro Rick Steve Tony Umar Vince Will Alex Dan Ed Fred Greg Hank Jim Ken
Lars Mike Ned Otto Ray Sid Ted Vic Wes""".split()
NAMES = [(n, "she") for n in _SHE] + [(n, "he") for n in _HE]

# (singular, plural, kind). Kinds: fruit, food, snack, drink, animal, toy, school, kitchen, flower,
# clothes, sport, craft, vehicle, nature, thing.
_ITEMS = {
    "fruit": "apple banana orange pear peach plum cherry grape lemon lime mango kiwi melon apricot berry papaya "
             "watermelon pineapple raspberry nectarine "
             "strawberry blueberry coconut fig tangerine",
    "food": "cookie cupcake muffin cake pie sandwich pizza pancake waffle egg potato carrot tomato onion "
            "cucumber pepper bagel donut biscuit roll taco burger sausage slice meatball noodle dumpling "
            "pretzel bun croissant cheese olive bean corn pea strawberry",
    "snack": "candy lollipop cracker chip gumdrop brownie treat nut popcorn jellybean chocolate mint",
    "drink": "juice soda milkshake smoothie lemonade water milk tea",
    "animal": "cat dog fish bird rabbit hamster duck chicken cow horse pig goat sheep frog turtle mouse "
              "puppy kitten pony lamb parrot snail spider bee butterfly ant bear lion tiger monkey zebra "
              "goose owl penguin whale shark crab ladybug worm squirrel deer fox wolf camel",
    "toy": "toy doll ball marble block puzzle kite robot teddy balloon drum whistle game lego "
           "bubble train yoyo rattle puppet skateboard rope",
    "school": "pen pencil crayon marker eraser book notebook ruler sticker card stamp folder page paper "
              "envelope glue backpack desk map chalk highlighter sharpener binder worksheet "
              "textbook comic magazine",
    "kitchen": "cup plate bowl spoon fork knife glass napkin pan pot mug jug kettle towel tray lid straw "
               "toothpick",
    "flower": "flower rose tulip daisy lily sunflower plant tree seed leaf cactus bush",
    "clothes": "sock shirt hat scarf glove shoe button dress coat sweater skirt jacket boot belt cap mitten "
               "sandal tie",
    "sport": "bat racket medal trophy goal point ticket helmet net",
    "craft": "bead ribbon shell rock gem feather bracelet necklace ring badge crystal pearl",
    "vehicle": "car truck bike bus boat plane rocket scooter wagon tractor",
    "money": "dollar",
    "nature": "acorn stick pinecone stone leaf",
    "thing": "box bag coin bottle can jar basket brick candle bell key lamp chair table picture photo "
             "letter magnet battery clock pillow blanket mirror brush comb umbrella flag tent sponge rope wheel hammer nail screw bucket ladder shovel "
             "wallet purse watch phone camera poster sticker card gift present coupon token",
}
_PLURAL_IRREGULAR = {"fish": "fish", "sheep": "sheep", "mouse": "mice", "leaf": "leaves", "knife": "knives",
                     "potato": "potatoes", "tomato": "tomatoes", "mango": "mangoes", "goose": "geese",
                     "glass": "glasses", "dress": "dresses", "peach": "peaches", "box": "boxes",
                     "sandwich": "sandwiches", "lunch": "lunches", "watch": "watches", "bus": "buses",
                     "match": "matches"}


def plural(word: str) -> str:
    if word in _PLURAL_IRREGULAR:
        return _PLURAL_IRREGULAR[word]
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


ITEMS = sorted({(w, plural(w), kind) for kind, words in _ITEMS.items() for w in words.split()})
# Words that exist only in the held-out family (test split): never in training data or the vocabulary.
HELDOUT_ITEMS = [(w, plural(w), kind) for w, kind in (
    ("walnut", "snack"), ("raisin", "snack"), ("apron", "clothes"), ("pebble", "craft"), ("acorn", "nature"),
    ("pinecone", "nature"), ("seashell", "craft"), ("cushion", "thing"), ("lantern", "thing"),
    ("postcard", "school"), ("dumpling", "food"), ("pumpkin", "food"), ("peanut", "snack"),
    ("hedgehog", "animal"), ("owl", "animal"), ("dinosaur", "toy"))]
_HELD_WORDS = {w for w, _, _ in HELDOUT_ITEMS}
ITEMS = [i for i in ITEMS if i[0] not in _HELD_WORDS]
KIND_WORDS = {"fruit": ["fruits", "pieces of fruit"], "food": ["things to eat", "treats"],
              "snack": ["snacks", "treats"], "drink": ["drinks"], "animal": ["animals", "pets"],
              "toy": ["toys"], "school": ["school things", "things"], "kitchen": ["things"],
              "flower": ["plants", "things"], "clothes": ["clothes", "things"], "sport": ["things"],
              "craft": ["things"], "vehicle": ["vehicles"], "nature": ["things"], "thing": ["things"], "money": ["dollars"]}

CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"), ("packet", "packets"),
              ("pack", "packs"), ("tray", "trays"), ("plate", "plates"), ("bowl", "bowls"), ("shelf", "shelves"),
              ("row", "rows"), ("carton", "cartons"), ("bucket", "buckets"), ("case", "cases"), ("crate", "crates"),
              ("sack", "sacks"), ("bundle", "bundles"), ("set", "sets"), ("pile", "piles"), ("stack", "stacks"),
              ("tin", "tins"), ("pot", "pots"), ("drawer", "drawers"), ("cage", "cages"), ("tank", "tanks")]
PARTS = [("spider", "spiders", 8, "legs"), ("dog", "dogs", 4, "legs"), ("cat", "cats", 4, "legs"),
         ("bird", "birds", 2, "legs"), ("cow", "cows", 4, "legs"), ("duck", "ducks", 2, "legs"),
         ("car", "cars", 4, "wheels"), ("bike", "bikes", 2, "wheels"), ("truck", "trucks", 6, "wheels"),
         ("hand", "hands", 5, "fingers"), ("star", "stars", 5, "points"), ("week", "weeks", 7, "days"),
         ("table", "tables", 4, "legs"), ("chair", "chairs", 4, "legs"), ("ant", "ants", 6, "legs"),
         ("box", "boxes", 6, "sides"), ("triangle", "triangles", 3, "sides"), ("square", "squares", 4, "sides")]

# (present, past, kinds or None for any). GAIN: the owner has more; LOSS: fewer; MAKE counts as gain.
GAIN = [("buys", "bought", None), ("finds", "found", None), ("gets", "got", None), ("picks", "picked", ("fruit", "flower", "nature")),
        ("collects", "collected", None), ("wins", "won", ("toy", "sport", "craft", "school")),
        ("receives", "received", None), ("gathers", "gathered", ("fruit", "flower", "nature", "craft")),
        ("brings", "brought", None), ("orders", "ordered", ("food", "snack", "drink", "school", "toy")),
        ("borrows", "borrowed", ("school", "toy", "kitchen", "sport")), ("earns", "earned", ("sport", "craft")),
        ("catches", "caught", ("animal",)), ("adopts", "adopted", ("animal",)), ("saves", "saved", None),
        ("picks up", "picked up", None), ("digs up", "dug up", ("nature", "craft", "food")),
        ("grabs", "grabbed", None), ("takes home", "took home", None), ("keeps", "kept", None),
        ("adds", "added", None), ("puts in", "put in", None), ("trades for", "traded for", None)]
MAKE = [("makes", "made", None), ("bakes", "baked", ("food",)), ("builds", "built", ("toy", "vehicle", "thing")),
        ("draws", "drew", None), ("paints", "painted", None), ("cooks", "cooked", ("food",)),
        ("plants", "planted", ("flower", "fruit")), ("grows", "grew", ("flower", "fruit", "food")),
        ("knits", "knitted", ("clothes",)), ("sews", "sewed", ("clothes", "toy")), ("folds", "folded", ("school", "clothes")),
        ("writes", "wrote", ("school",)), ("carves", "carved", ("toy", "thing")), ("crafts", "crafted", ("craft", "toy")),
        ("prepares", "prepared", ("food", "drink", "snack")), ("fills", "filled", ("thing", "kitchen"))]
LOSS = [("eats", "ate", ("fruit", "food", "snack")), ("drinks", "drank", ("drink",)), ("loses", "lost", None),
        ("sells", "sold", None), ("uses", "used", ("school", "craft", "kitchen", "food", "thing")),
        ("breaks", "broke", ("toy", "kitchen", "thing", "craft")), ("drops", "dropped", None),
        ("throws away", "threw away", None), ("donates", "donated", None), ("spends", "spent", ("money",)),
        ("gives away", "gave away", None), ("trades away", "traded away", None), ("returns", "returned", None),
        ("mails", "mailed", ("school",)), ("sends", "sent", ("school",)), ("spills", "spilled", ("drink",)),
        ("burns", "burned", ("food", "thing")), ("wears out", "wore out", ("clothes",)),
        ("frees", "freed", ("animal",)), ("pops", "popped", ("toy",)), ("misplaces", "misplaced", None),
        ("packs away", "packed away", None), ("cuts", "cut", ("flower",)), ("hides", "hid", None)]
# giving to someone: "{verb} {n} to {O}" (present, past)
GIVE = [("gives", "gave"), ("lends", "lent"), ("hands", "handed"), ("sends", "sent"), ("passes", "passed"),
        ("mails", "mailed"), ("donates", "donated"), ("sells", "sold"), ("shows and gives", "showed and gave")]

PEOPLE = ["mom", "dad", "grandma", "grandpa", "sister", "brother", "aunt", "uncle", "cousin", "friend", "teacher",
          "neighbor", "coach", "classmate", "best friend", "little brother", "little sister", "big sister",
          "big brother", "mother", "father", "grandmother", "grandfather", "baby sister", "baby brother"]
GROUPS = [("friend", "friends"), ("child", "children"), ("kid", "kids"), ("student", "students"),
          ("classmate", "classmates"), ("cousin", "cousins"), ("player", "players"), ("team", "teams"),
          ("boy", "boys"), ("girl", "girls"), ("neighbor", "neighbors"), ("brother", "brothers"),
          ("sister", "sisters"), ("group", "groups"), ("table", "tables"), ("box", "boxes"), ("bag", "bags"),
          ("plate", "plates"), ("basket", "baskets"), ("person", "people")]
COLOURS = "red blue green yellow purple pink white black brown gray orange gold silver".split()
SIZES = "big small little large tiny huge long short tall round".split()
QUALITIES = "new old shiny soft fresh sweet juicy tasty nice pretty funny heavy light clean dirty lovely cute " \
            "colorful striped spotted fancy plain wooden plastic paper warm cold".split()
PLACES = ["at school", "at the park", "at the store", "at the market", "at the beach", "at home", "in the garden",
          "at the zoo", "at the library", "in the kitchen", "at the fair", "at the farm", "in the yard",
          "at the mall", "at the party", "in the forest", "at the lake", "in class", "at the shop", "at the bakery",
          "at camp", "in the playground", "at the museum", "in the city", "at the river", "at the pool",
          "at the toy store", "at the supermarket", "at the circus", "at the game", "in the fridge",
          "in the parking lot", "at the bus stop", "at the restaurant", "at the cafe", "at work", "at the office",
          "at the hospital", "at the station", "at grandma's house", "in the car", "on the bus", "at the gym"]
TIMES = ["on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday",
         "in the morning", "in the afternoon", "in the evening", "at night", "after school", "after lunch",
         "before dinner", "yesterday", "today", "last week", "on a sunny day", "on the weekend", "during recess",
         "this morning", "in the summer", "in the winter", "in the spring", "in the fall", "on a rainy day",
         "at noon", "after breakfast", "on the way home", "this week"]
ASIDES = ["It is a sunny day.", "It is raining outside.", "{P} is very happy.", "{P} likes {items} a lot.",
          "{s_cap} {person} is proud of {o}.", "{P} loves {colour} things.", "The weather is nice.",
          "{P} is in a good mood.", "Everyone is having fun.", "{s_cap} favorite color is {colour}.",
          "{P} smiles.", "{P} puts them on the table.", "It is a busy day.", "{P} tells {s} {person}."]

# Who else a problem can be about: "A farmer has 30 sheep." (used as the name, with a random pronoun)
ROLES = ["the farmer", "the baker", "the teacher", "the chef", "the shopkeeper", "the librarian", "the gardener",
         "the man", "the woman", "the boy", "the girl", "the clown", "the pirate", "the king", "the queen",
         "the coach", "the doctor", "the nurse", "the driver", "the painter", "the artist", "the cook",
         "the fisherman", "the zookeeper", "the mailman", "the store", "the shop", "the class", "the school",
         "the team", "the club", "a farmer", "a baker", "a shopkeeper", "a teacher", "a girl", "a boy"]
# Activities counted in units (rate and comparison problems): (present, past, base, unit, unit_one)
ACTIVITIES = [("reads", "read", "read", "pages", "page"), ("runs", "ran", "run", "laps", "lap"),
              ("walks", "walked", "walk", "miles", "mile"), ("swims", "swam", "swim", "laps", "lap"),
              ("writes", "wrote", "write", "pages", "page"), ("jumps", "jumped", "jump", "times", "time"),
              ("rides", "rode", "ride", "miles", "mile"), ("sings", "sang", "sing", "songs", "song"),
              ("draws", "drew", "draw", "pictures", "picture"), ("scores", "scored", "score", "points", "point"),
              ("practices", "practiced", "practice", "minutes", "minute"), ("plays", "played", "play", "games", "game"),
              ("bakes", "baked", "bake", "pies", "pie"), ("washes", "washed", "wash", "dishes", "dish"),
              ("solves", "solved", "solve", "puzzles", "puzzle"), ("watches", "watched", "watch", "movies", "movie")]
# Scenes: things that come and go on their own ("There were 14 birds on the fence. 6 more came.")
SCENE_PLACES = ["on the fence", "in the tree", "in the pond", "in the sky", "on the table", "in the box",
                "in the park", "on the shelf", "in the fridge", "in the parking lot", "in the garden",
                "on the bus", "in the room", "in the field", "at the party", "in the jar", "on the grass",
                "in the basket", "on the playground", "in the classroom", "in the lake", "on the bench"]
SCENE_GAIN = [("come", "came"), ("arrive", "arrived"), ("join them", "joined them"), ("fly in", "flew in"), ("are added", "were added"), ("show up", "showed up")]
SCENE_LOSS = [("leave", "left"), ("go away", "went away"), ("go home", "went home"), ("fly away", "flew away"),
              ("run away", "ran away"), ("are taken", "were taken"), ("are eaten", "were eaten"),
              ("are broken", "were broken"), ("are sold", "were sold"), ("hop away", "hopped away")]
