"""AI2-THOR's object facts as ALFRED states them, for replaying ALFRED's trajectories symbolically.

Taken from ALFRED's `gen/constants.py` (askforalfred/alfred, commit f91f4c0, MIT licence): which object
classes each receptacle class accepts (`VAL_RECEPTACLE_OBJECTS`), which can be heated, cooled, cleaned,
sliced (`VAL_ACTION_OBJECTS`), and which open (`OPENABLE_CLASS_LIST`). The generated household keeps its
own smaller catalogue (rgvlm_core/sim/catalog.py); a replay of ALFRED's own trajectories needs ALFRED's
classes (Pencil, CD, Statue, ...), so it reads these.
"""

from __future__ import annotations


def _table(rows: dict[str, str]) -> dict[str, frozenset[str]]:
    return {key: frozenset(value.split()) for key, value in rows.items()}


RECEPTACLE_OBJECTS: dict[str, frozenset[str]] = _table(
    {
        "ArmChair": (
            "BasketBall Book Box CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl"
        ),
        "BathtubBasin": "Cloth DishSponge HandTowel SoapBar",
        "Bed": "BaseballBat BasketBall Book CellPhone Laptop Newspaper Pillow TennisRacket",
        "Bowl": (
            "Apple AppleSliced ButterKnife CD Candle CellPhone Cloth CreditCard DishSponge Egg Fork "
            "KeyChain Knife Ladle Lettuce LettuceSliced Mug PaperTowel Pen Pencil Potato PotatoSliced "
            "RemoteControl Spatula Spoon Tomato TomatoSliced Watch"
        ),
        "Box": (
            "AlarmClock Book CD Candle CellPhone Cloth CreditCard DishSponge Glassbottle KeyChain Mug "
            "PaperTowel Pen Pencil RemoteControl Statue TissueBox Vase Watch"
        ),
        "Cabinet": (
            "Book Bowl Box CD Candle Cloth Cup DishSponge Glassbottle HandTowel Kettle Ladle Mug "
            "Newspaper Pan PepperShaker Plate Plunger Pot SaltShaker SoapBar SoapBottle SprayBottle "
            "TissueBox ToiletPaper ToiletPaperRoll Vase WateringCan WineBottle"
        ),
        "Cart": (
            "Candle Cloth DishSponge HandTowel Mug PaperTowel Plunger SoapBar SoapBottle SprayBottle "
            "Statue TissueBox ToiletPaper ToiletPaperRoll Vase"
        ),
        "CoffeeMachine": "Mug",
        "CoffeeTable": (
            "AlarmClock Apple AppleSliced BaseballBat BasketBall Book Bowl Box Bread BreadSliced "
            "ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Glassbottle "
            "HandTowel Kettle KeyChain Knife Ladle Laptop Lettuce LettuceSliced Mug Newspaper Pan "
            "PaperTowel Pen Pencil PepperShaker Plate Pot Potato PotatoSliced RemoteControl SaltShaker "
            "SoapBar SoapBottle Spatula Spoon SprayBottle Statue TennisRacket TissueBox ToiletPaper "
            "ToiletPaperRoll Tomato TomatoSliced Vase Watch WateringCan WineBottle"
        ),
        "CounterTop": (
            "AlarmClock Apple AppleSliced BaseballBat BasketBall Book Bowl Box Bread BreadSliced "
            "ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Glassbottle "
            "HandTowel Kettle KeyChain Knife Ladle Laptop Lettuce LettuceSliced Mug Newspaper Pan "
            "PaperTowel Pen Pencil PepperShaker Plate Pot Potato PotatoSliced RemoteControl SaltShaker "
            "SoapBar SoapBottle Spatula Spoon SprayBottle Statue TennisRacket TissueBox ToiletPaper "
            "ToiletPaperRoll Tomato TomatoSliced Vase Watch WateringCan WineBottle"
        ),
        "Cup": "ButterKnife Fork Spoon",
        "Desk": (
            "AlarmClock BasketBall Book Bowl Box CD Candle CellPhone Cloth CreditCard Cup Glassbottle "
            "KeyChain Laptop Mug Newspaper Pen Pencil Plate RemoteControl SoapBottle SprayBottle Statue "
            "TennisRacket TissueBox ToiletPaper ToiletPaperRoll Vase Watch WateringCan WineBottle"
        ),
        "DiningTable": (
            "AlarmClock Apple AppleSliced BaseballBat BasketBall Book Bowl Box Bread BreadSliced "
            "ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Glassbottle "
            "HandTowel Kettle KeyChain Knife Ladle Laptop Lettuce LettuceSliced Mug Newspaper Pan "
            "PaperTowel Pen Pencil PepperShaker Plate Pot Potato PotatoSliced RemoteControl SaltShaker "
            "SoapBar SoapBottle Spatula Spoon SprayBottle Statue TennisRacket TissueBox ToiletPaper "
            "ToiletPaperRoll Tomato TomatoSliced Vase Watch WateringCan WineBottle"
        ),
        "Drawer": (
            "Book ButterKnife CD Candle CellPhone Cloth CreditCard DishSponge Fork HandTowel KeyChain "
            "Knife Ladle Newspaper Pen Pencil PepperShaker RemoteControl SaltShaker SoapBar SoapBottle "
            "Spatula Spoon SprayBottle TissueBox ToiletPaper ToiletPaperRoll Watch WateringCan"
        ),
        "Dresser": (
            "AlarmClock BasketBall Book Bowl Box CD Candle CellPhone Cloth CreditCard Cup Glassbottle "
            "KeyChain Laptop Mug Newspaper Pen Pencil Plate RemoteControl SprayBottle Statue "
            "TennisRacket TissueBox ToiletPaper ToiletPaperRoll Vase Watch WateringCan WineBottle"
        ),
        "Fridge": (
            "Apple AppleSliced Bowl Bread BreadSliced Cup Egg Glassbottle Lettuce LettuceSliced Mug Pan "
            "Plate Pot Potato PotatoSliced Tomato TomatoSliced WineBottle"
        ),
        "GarbageCan": (
            "Apple AppleSliced Bread BreadSliced CD Cloth DishSponge Egg HandTowel Lettuce "
            "LettuceSliced Newspaper PaperTowel Pen Pencil Potato PotatoSliced SoapBar SoapBottle "
            "SprayBottle TissueBox ToiletPaper ToiletPaperRoll Tomato TomatoSliced WineBottle"
        ),
        "HandTowelHolder": "HandTowel",
        "LaundryHamper": "Cloth",
        "Microwave": (
            "Apple AppleSliced Bowl Bread BreadSliced Cup Egg Glassbottle Mug Plate Potato PotatoSliced "
            "Tomato TomatoSliced"
        ),
        "Mug": "ButterKnife Fork KeyChain Knife Pen Pencil Spoon Watch",
        "Ottoman": (
            "BasketBall Book Box CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl"
        ),
        "Pan": (
            "Apple AppleSliced ButterKnife DishSponge Egg Fork Knife Ladle Lettuce LettuceSliced Potato "
            "PotatoSliced Spatula Spoon Tomato TomatoSliced"
        ),
        "Plate": (
            "AlarmClock Apple AppleSliced Book ButterKnife CD Candle CellPhone Cloth CreditCard "
            "DishSponge Egg Fork Glassbottle KeyChain Knife Ladle Lettuce LettuceSliced Mug PaperTowel "
            "Pen Pencil Potato PotatoSliced Spatula Spoon TissueBox Tomato TomatoSliced Watch"
        ),
        "Pot": (
            "Apple AppleSliced ButterKnife DishSponge Egg Fork Knife Ladle Lettuce LettuceSliced Potato "
            "PotatoSliced Spatula Spoon Tomato TomatoSliced"
        ),
        "Safe": "CD CellPhone CreditCard KeyChain Statue Vase Watch",
        "Shelf": (
            "AlarmClock Book Bowl Box CD Candle CellPhone Cloth CreditCard Cup DishSponge Glassbottle "
            "HandTowel Kettle KeyChain Mug Newspaper PaperTowel Pen Pencil PepperShaker Plate Pot "
            "RemoteControl SaltShaker SoapBar SoapBottle SprayBottle Statue TissueBox ToiletPaper "
            "ToiletPaperRoll Vase Watch WateringCan WineBottle"
        ),
        "SideTable": (
            "AlarmClock Apple AppleSliced BaseballBat BasketBall Book Bowl Box Bread BreadSliced "
            "ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Glassbottle "
            "HandTowel Kettle KeyChain Knife Ladle Laptop Lettuce LettuceSliced Mug Newspaper Pan "
            "PaperTowel Pen Pencil PepperShaker Plate Pot Potato PotatoSliced RemoteControl SaltShaker "
            "SoapBar SoapBottle Spatula Spoon SprayBottle Statue TennisRacket TissueBox ToiletPaper "
            "ToiletPaperRoll Tomato TomatoSliced Vase Watch WateringCan WineBottle"
        ),
        "SinkBasin": (
            "Apple AppleSliced Bowl ButterKnife Cloth Cup DishSponge Egg Fork Glassbottle HandTowel "
            "Kettle Knife Ladle Lettuce LettuceSliced Mug Pan Plate Pot Potato PotatoSliced SoapBar "
            "Spatula Spoon Tomato TomatoSliced"
        ),
        "Sofa": (
            "BasketBall Book Box CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl"
        ),
        "StoveBurner": "Kettle Pan Pot",
        "TVStand": "TissueBox",
        "Toaster": "BreadSliced",
        "Toilet": (
            "Candle Cloth DishSponge HandTowel Newspaper PaperTowel SoapBar SoapBottle SprayBottle "
            "TissueBox ToiletPaper ToiletPaperRoll"
        ),
        "ToiletPaperHanger": "ToiletPaper ToiletPaperRoll",
        "TowelHolder": "Towel",
    }
)

ACTION_OBJECTS: dict[str, frozenset[str]] = _table(
    {
        "Cleanable": (
            "Apple AppleSliced Bowl ButterKnife Cloth Cup DishSponge Egg Fork Kettle Knife Ladle "
            "Lettuce LettuceSliced Mug Pan Plate Pot Potato PotatoSliced SoapBar Spatula Spoon Tomato "
            "TomatoSliced"
        ),
        "Coolable": (
            "Apple AppleSliced Bowl Bread BreadSliced Cup Egg Lettuce LettuceSliced Mug Pan Plate Pot "
            "Potato PotatoSliced Tomato TomatoSliced WineBottle"
        ),
        "Heatable": (
            "Apple AppleSliced Bread BreadSliced Cup Egg Mug Plate Potato PotatoSliced Tomato TomatoSliced"
        ),
        "Sliceable": "Apple Bread Egg Lettuce Potato Tomato",
    }
)

OPENABLE: frozenset[str] = frozenset({"Fridge", "Cabinet", "Microwave", "Drawer", "Safe", "Box", "Laptop"})
# classes AI2-THOR switches on and off in ALFRED's tasks (lamps) and steps (microwave, faucet)
TOGGLEABLE: frozenset[str] = frozenset({"DeskLamp", "FloorLamp", "Microwave", "Faucet", "StoveKnob"})
KNIVES: frozenset[str] = frozenset({"Knife", "ButterKnife"})
