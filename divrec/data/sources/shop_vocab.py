"""Hard-coded vocabulary of the ``shop_sim`` shop: category tree, brands, attributes, prices.

``TREE``: department -> (brands "a|b", {attribute: "v1|v2"}, (min price, max price),
{subcategory: [(leaf name, "leaf noun|synonym", "adjective|...")]}). The first noun of a leaf
is its *leaf noun*, which every item title contains.
"""

# department -> (brands, {attribute: values}, (min price, max price), {sub: [(leaf, nouns, adjs)]})
TREE: dict[str, tuple[str, dict[str, str], tuple[float, float], dict[str, list[tuple]]]] = {
    "Electronics": (
        "Sonora|Voltix|Kestrel|Lumina|Arcwave",
        {"colour": "Black|White|Silver|Graphite|Blue"},
        (15.0, 1500.0),
        {
            "Audio": [
                ("Headphones", "headphones|headset", "wireless|noise-cancelling|over-ear|studio"),
                ("Speakers", "speaker|soundbar", "portable|waterproof|bluetooth|smart"),
                ("Microphones", "microphone|mic", "usb|condenser|podcast|lavalier"),
            ],
            "Computers": [
                ("Laptops", "laptop|notebook", "ultrathin|gaming|business|lightweight"),
                ("Monitors", "monitor|display", "4k|curved|ultrawide|ips"),
                ("Keyboards", "keyboard|keypad", "mechanical|backlit|ergonomic|compact"),
            ],
            "Cameras": [
                ("Action Cameras", "action camera|camcorder", "rugged|waterproof|4k|helmet"),
                ("Tripods", "tripod|camera stand", "carbon|travel|adjustable|tabletop"),
            ],
        },
    ),
    "Home & Kitchen": (
        "Hearthly|Copperleaf|Nordhaus|Casa Verde",
        {"colour": "Red|Cream|Charcoal|Sage|Navy", "material": "Steel|Cast iron|Ceramic|Glass"},
        (8.0, 400.0),
        {
            "Cookware": [
                ("Frying Pans", "frying pan|skillet", "non-stick|induction|deep|hammered"),
                ("Saucepans", "saucepan|pot", "lidded|tri-ply|copper|stackable"),
                ("Baking Dishes", "baking dish|casserole dish", "oven-safe|rectangular|deep"),
            ],
            "Small Appliances": [
                ("Coffee Makers", "coffee maker|espresso machine", "programmable|barista|drip"),
                ("Blenders", "blender|smoothie maker", "high-speed|personal|quiet|glass-jar"),
                ("Toasters", "toaster|toaster oven", "two-slice|four-slice|retro|wide-slot"),
            ],
            "Bedding": [
                ("Duvets", "duvet|comforter", "all-season|hypoallergenic|goose-down|summer"),
                ("Pillows", "pillow|cushion", "memory-foam|orthopedic|feather|cooling"),
            ],
        },
    ),
    "Clothing": (
        "Northline|Urbano|Wren & Co|Fieldstone",
        {"size": "XS|S|M|L|XL", "colour": "Black|Olive|Navy|Grey|Burgundy"},
        (12.0, 250.0),
        {
            "Men": [
                ("Shirts", "shirt|oxford shirt", "slim-fit|button-down|flannel|linen"),
                ("Jeans", "jeans|denim trousers", "straight-leg|selvedge|relaxed|stretch"),
                ("Jackets", "jacket|parka", "quilted|waterproof|bomber|insulated"),
            ],
            "Women": [
                ("Dresses", "dress|sundress", "floral|wrap|maxi|pleated"),
                ("Blouses", "blouse|tunic", "silk|ruffled|sleeveless|embroidered"),
                ("Skirts", "skirt|midi skirt", "a-line|pleated|denim|wrap"),
            ],
            "Shoes": [
                ("Sneakers", "sneakers|trainers", "running|low-top|retro|knit"),
                ("Boots", "boots|ankle boots", "leather|chelsea|hiking|lace-up"),
                ("Sandals", "sandals|slides", "strappy|platform|cork|beach"),
            ],
        },
    ),
    "Sports & Outdoors": (
        "Peakform|TrailCraft|Velocity|Summit Gear",
        {"colour": "Orange|Teal|Black|Lime|Grey", "size": "S|M|L"},
        (10.0, 600.0),
        {
            "Fitness": [
                ("Yoga Mats", "yoga mat|exercise mat", "non-slip|extra-thick|cork|travel"),
                ("Dumbbells", "dumbbell|weight set", "adjustable|hex|neoprene|cast-iron"),
                ("Resistance Bands", "resistance band|exercise band", "latex|fabric|loop"),
            ],
            "Camping": [
                ("Tents", "tent|shelter", "two-person|ultralight|family|pop-up"),
                ("Sleeping Bags", "sleeping bag|sleep sack", "mummy|three-season|down|compact"),
                ("Backpacks", "hiking backpack|daypack", "40-litre|ventilated|rolltop|frameless"),
            ],
            "Cycling": [
                ("Bike Helmets", "bike helmet|cycling helmet", "aero|mips|commuter|vented"),
                ("Bike Lights", "bike light|bicycle lamp", "rechargeable|rear|1000-lumen"),
            ],
        },
    ),
    "Books": (
        "Harbor Press|Quill & Ink|Meridian Books|Lantern House",
        {"format": "Hardcover|Paperback|Ebook|Audiobook"},
        (5.0, 60.0),
        {
            "Fiction": [
                ("Mystery", "mystery novel|detective story", "gripping|noir|cosy|twisty"),
                ("Science Fiction", "science fiction novel|space opera", "dystopian|galactic"),
                ("Romance", "romance novel|love story", "heartwarming|historical|steamy"),
                ("Fantasy", "fantasy novel|epic saga", "epic|magical|dark|mythic"),
            ],
            "Non-Fiction": [
                ("Cookbooks", "cookbook|recipe collection", "vegetarian|baking|italian|quick"),
                ("Biographies", "biography|memoir", "inspiring|candid|authorised|political"),
                ("History", "history book|chronicle", "illustrated|medieval|ancient|military"),
            ],
        },
    ),
    "Beauty & Personal Care": (
        "Velvetine|Purelle|Oakmoss|Lumiere",
        {"size": "30 ml|50 ml|100 ml|200 ml", "scent": "Unscented|Lavender|Citrus|Rose"},
        (4.0, 120.0),
        {
            "Skincare": [
                ("Moisturisers", "moisturiser|face cream", "hydrating|rich|light|overnight"),
                ("Serums", "serum|face serum", "vitamin-c|retinol|hyaluronic|brightening"),
                ("Sunscreen", "sunscreen|sun cream", "spf50|mineral|sport|tinted"),
            ],
            "Hair Care": [
                ("Shampoo", "shampoo|hair wash", "volumising|sulfate-free|clarifying"),
                ("Conditioner", "conditioner|hair mask", "repairing|smoothing|leave-in"),
            ],
            "Fragrance": [
                ("Perfume", "perfume|eau de parfum", "floral|woody|fresh|oriental"),
                ("Cologne", "cologne|aftershave", "citrus|spicy|aquatic|musky"),
            ],
        },
    ),
    "Toys & Games": (
        "Brightblock|Puzzleworks|Tinkerton|Playnest",
        {"age": "3+|6+|8+|12+"},
        (6.0, 150.0),
        {
            "Board Games": [
                ("Strategy Games", "strategy board game|war game", "cooperative|deck-building"),
                ("Party Games", "party game|card game", "hilarious|quick|trivia|drawing"),
                ("Jigsaw Puzzles", "jigsaw puzzle|puzzle", "1000-piece|panoramic|landscape"),
            ],
            "Building Toys": [
                ("Building Blocks", "building blocks|brick set", "creative|castle|city|space"),
                ("Model Kits", "model kit|scale model", "aircraft|railway|ship|snap-fit"),
            ],
        },
    ),
    "Garden & Tools": (
        "Greenhaven|IronRoot|Fernwick|Toolsmith",
        {"colour": "Green|Yellow|Red|Black", "power": "Cordless|Corded|Manual|Petrol"},
        (7.0, 700.0),
        {
            "Power Tools": [
                ("Drills", "drill|drill driver", "hammer|brushless|compact|18v"),
                ("Saws", "circular saw|saw", "mitre|plunge|track|reciprocating"),
                ("Sanders", "sander|orbital sander", "random-orbit|detail|belt|palm"),
            ],
            "Gardening": [
                ("Lawn Mowers", "lawn mower|mower", "self-propelled|rotary|robotic|push"),
                ("Garden Hoses", "garden hose|hose reel", "expandable|kink-free|heavy-duty"),
                ("Planters", "planter|flower pot", "terracotta|self-watering|hanging|raised"),
            ],
        },
    ),
}

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_PROBS = (0.14, 0.27, 0.22, 0.17, 0.12, 0.08)
REGIONS = ("North America", "Europe", "Asia", "South America", "Oceania", "Africa")
REGION_PROBS = (0.30, 0.28, 0.24, 0.08, 0.05, 0.05)
