"""What the household holds: ALFRED's locations and objects, what fits where, and what can change.

Names are ALFRED's class names. There is at most one location of each class per room (so a token
like `GotoLocation(Fridge)` is unambiguous), and several objects may share a class (two apples for
pick_two_obj_and_place). The catalogue is fixed across rooms so that the action space and the
state vector have one shape everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- locations: receptacles and the two lamps (toggle targets) ------------------------------------
OPENABLE: tuple[str, ...] = ("Fridge", "Microwave", "Cabinet", "Drawer")
LAMPS: tuple[str, ...] = ("DeskLamp", "FloorLamp")
RECEPTACLES: tuple[str, ...] = (
    "CounterTop",
    "DiningTable",
    "Fridge",
    "Microwave",
    "SinkBasin",
    "Cabinet",
    "Drawer",
    "Shelf",
    "Sofa",
    "CoffeeTable",
    "SideTable",
    "TVStand",
    "ArmChair",
    "Bed",
    "Desk",
    "Dresser",
    "Toilet",
    "BathtubBasin",
)
LOCATIONS: tuple[str, ...] = RECEPTACLES + LAMPS
HEAT_AT, COOL_AT, CLEAN_AT = "Microwave", "Fridge", "SinkBasin"

# -- objects ------------------------------------------------------------------------------------
FOOD: tuple[str, ...] = ("Apple", "Tomato", "Potato", "Bread", "Lettuce", "Egg")
DRINKWARE: tuple[str, ...] = ("Mug", "Cup")
CUTLERY: tuple[str, ...] = ("Knife", "ButterKnife", "Spoon")
MOVABLE: tuple[str, ...] = ("Plate", "Bowl", "Pan", "Pot", "Box")  # movable receptacles
SMALL: tuple[str, ...] = ("KeyChain", "CellPhone", "CreditCard", "RemoteControl", "Watch")
DECOR: tuple[str, ...] = ("Book", "Pillow", "Vase", "AlarmClock", "Laptop")
BATH: tuple[str, ...] = ("SoapBar", "Cloth", "SprayBottle", "ToiletPaper", "Candle")
OBJECTS: tuple[str, ...] = FOOD + DRINKWARE + CUTLERY + MOVABLE + SMALL + DECOR + BATH

SLICEABLE = frozenset({"Apple", "Tomato", "Potato", "Bread", "Lettuce"})
HEATABLE = frozenset({"Apple", "Tomato", "Potato", "Bread", "Egg", "Mug", "Cup"})
COOLABLE = frozenset({"Apple", "Tomato", "Potato", "Bread", "Lettuce", "Egg", "Mug", "Cup", "Pan", "Pot"})
CLEANABLE = frozenset(
    {"Mug", "Cup", "Plate", "Bowl", "Pan", "Pot", "Knife", "ButterKnife", "Spoon", "Apple", "Tomato"}
    | {"Potato", "Lettuce", "Cloth", "SoapBar"}
)
KNIVES = frozenset({"Knife", "ButterKnife"})

_TABLES = ("CounterTop", "DiningTable")
_SURFACES = ("CoffeeTable", "SideTable", "Desk", "Dresser", "Shelf", "TVStand", "DiningTable")
_SEATS = ("Sofa", "ArmChair", "Bed")
_FITS: dict[str, tuple[str, ...]] = {
    **{f: (*_TABLES, "Fridge", "Microwave", "SinkBasin", "Plate", "Bowl", "Pan", "Pot") for f in FOOD},
    **{
        d: (*_TABLES, "Fridge", "Microwave", "SinkBasin", "Cabinet", "Shelf", "CoffeeTable", "Desk")
        for d in DRINKWARE
    },
    **{c: (*_TABLES, "Drawer", "SinkBasin", "Plate", "Bowl") for c in CUTLERY},
    "Plate": (*_TABLES, "Fridge", "Microwave", "SinkBasin", "Cabinet", "Shelf", "CoffeeTable"),
    "Bowl": (*_TABLES, "Fridge", "Microwave", "SinkBasin", "Cabinet", "Shelf", "CoffeeTable"),
    "Pan": (*_TABLES, "SinkBasin", "Cabinet", "Fridge"),
    "Pot": (*_TABLES, "SinkBasin", "Cabinet", "Fridge"),
    "Box": (*_SURFACES, *_SEATS),
    **{s: (*_SURFACES, *_SEATS, "Drawer", "Box") for s in SMALL},
    "Book": (*_SURFACES, *_SEATS),
    "Pillow": _SEATS,
    "Vase": (*_SURFACES, "CounterTop"),
    "AlarmClock": ("Desk", "Dresser", "SideTable", "Shelf"),
    "Laptop": ("Desk", "Dresser", "CoffeeTable", "Sofa", "ArmChair", "Bed"),
    "SoapBar": ("CounterTop", "SinkBasin", "BathtubBasin", "Toilet", "Cabinet", "Shelf"),
    "Cloth": ("CounterTop", "SinkBasin", "BathtubBasin", "Cabinet", "Shelf", "Drawer"),
    "SprayBottle": ("CounterTop", "Toilet", "Cabinet", "Shelf"),
    "ToiletPaper": ("CounterTop", "Toilet", "Cabinet", "Shelf", "Drawer"),
    "Candle": ("CounterTop", "Toilet", "Cabinet", "Shelf", "BathtubBasin"),
}


def fits(obj: str, receptacle: str) -> bool:
    """Whether an object of class `obj` may be put in (or on) a receptacle of class `receptacle`."""
    return receptacle in _FITS[obj]


@dataclass(frozen=True)
class RoomKind:
    """A kind of room: the locations it always has, those it may have, and its objects."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    objects: tuple[str, ...]


ROOM_KINDS: dict[str, RoomKind] = {
    room.name: room
    for room in (
        RoomKind(
            "kitchen",
            required=("CounterTop", "Fridge", "Microwave", "SinkBasin"),
            optional=("DiningTable", "Cabinet", "Drawer", "Shelf"),
            objects=FOOD + DRINKWARE + CUTLERY + ("Plate", "Bowl", "Pan", "Pot"),
        ),
        RoomKind(
            "living room",
            required=("Sofa", "CoffeeTable", "FloorLamp"),
            optional=("SideTable", "Shelf", "TVStand", "ArmChair", "Drawer", "DiningTable"),
            objects=(*SMALL, "Book", "Pillow", "Vase", "Laptop", "Box"),
        ),
        RoomKind(
            "bedroom",
            required=("Bed", "Desk", "DeskLamp"),
            optional=("Dresser", "SideTable", "Shelf", "Drawer", "ArmChair"),
            objects=(*SMALL, "Book", "Pillow", "AlarmClock", "Laptop", "Box"),
        ),
        RoomKind(
            "bathroom",
            required=("CounterTop", "SinkBasin", "Toilet"),
            optional=("BathtubBasin", "Cabinet", "Shelf", "Drawer"),
            objects=BATH,
        ),
    )
}

MAX_LOCATIONS = 8  # layout slots around the walls of a room


_SPOKEN = {"CounterTop": "counter", "SinkBasin": "sink", "BathtubBasin": "bathtub", "TVStand": "TV stand"}
_WORD_BREAK = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def words(name: str) -> str:
    """`CoffeeTable` -> `coffee table`, `CounterTop` -> `counter`: how text names a class."""
    return _SPOKEN.get(name) or _WORD_BREAK.sub(" ", name).lower()
