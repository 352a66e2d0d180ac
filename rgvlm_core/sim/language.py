"""Natural-language instructions and goals, with phrasings held out for evaluation.

Every subtask kind and task type has several phrasings. The last ones of each list are kept for
evaluation only (`unseen`): the generator never writes them, so a policy evaluated on them meets
instructions it was not trained on.
"""

from __future__ import annotations

from typing import Literal

from rgvlm_core.sim.catalog import words

Phrasing = Literal["seen", "unseen"]
HELD_OUT = 2  # the last HELD_OUT phrasings of every list are for evaluation only

# Placeholders: {o} object, {r} receptacle or lamp, {m} movable receptacle.
SUBTASK_PHRASES: dict[str, tuple[str, ...]] = {
    "Pickup": (
        "Pick up the {o}.",
        "Grab the {o}.",
        "Take the {o}.",
        "Go get the {o} and pick it up.",
        "Find the {o} and take it.",
        "Get hold of the {o}.",
        "Pick the {o} up.",
        "Fetch the {o}.",
        "Lift the {o} from where it is.",
        "Collect the {o}.",
    ),
    "Put": (
        "Put the {o} in the {r}.",
        "Place the {o} on the {r}.",
        "Set the {o} down in the {r}.",
        "Take the {o} to the {r} and leave it there.",
        "Bring the {o} over to the {r} and put it down.",
        "Drop the {o} off at the {r}.",
        "Leave the {o} on the {r}.",
        "Move the {o} to the {r}.",
        "Deposit the {o} at the {r}.",
        "Rest the {o} on the {r}.",
    ),
    "Heat": (
        "Heat the {o} in the microwave.",
        "Warm the {o} up using the microwave.",
        "Microwave the {o}.",
        "Take the {o} to the microwave and heat it.",
        "Cook the {o} in the microwave.",
        "Use the microwave to make the {o} hot.",
        "Warm the {o}.",
        "Make the {o} hot with the microwave.",
        "Zap the {o} in the microwave until it is hot.",
        "Give the {o} a spin in the microwave to heat it.",
    ),
    "Cool": (
        "Cool the {o} in the fridge.",
        "Chill the {o} in the refrigerator.",
        "Put the {o} in the fridge to cool it down.",
        "Take the {o} to the fridge and chill it.",
        "Make the {o} cold using the fridge.",
        "Refrigerate the {o}.",
        "Let the {o} cool in the fridge.",
        "Chill the {o}.",
        "Use the fridge to bring the {o} down to a cold temperature.",
        "Get the {o} cold in the refrigerator.",
    ),
    "Clean": (
        "Rinse the {o} in the sink.",
        "Clean the {o} in the sink.",
        "Wash the {o} off at the sink.",
        "Take the {o} to the sink and clean it.",
        "Run the {o} under the tap to clean it.",
        "Wash the {o}.",
        "Clean off the {o} with water.",
        "Give the {o} a rinse.",
        "Scrub the {o} clean under the faucet.",
        "Get the {o} clean using the sink.",
    ),
    "Slice": (
        "Slice the {o}.",
        "Cut the {o} into slices.",
        "Use the knife to slice the {o}.",
        "Cut up the {o} with the knife.",
        "Carve the {o} into pieces.",
        "Chop the {o}.",
        "Make slices of the {o}.",
        "Cut the {o}.",
        "Divide the {o} into slices with the blade.",
        "Take the knife to the {o} and cut it.",
    ),
    "Toggle": (
        "Turn on the {r}.",
        "Switch on the {r}.",
        "Turn the {r} on.",
        "Light the {r}.",
        "Flip the switch of the {r}.",
        "Power on the {r}.",
        "Switch the {r} on to light the room.",
        "Put the {r} on.",
        "Click the {r} on.",
        "Illuminate the {r}.",
    ),
}

GOAL_PHRASES: dict[str, tuple[str, ...]] = {
    "pick_and_place_simple": (
        "Put {a_o} in the {r}.",
        "Place {a_o} on the {r}.",
        "Move {a_o} to the {r}.",
        "Bring {a_o} to the {r}.",
        "Relocate {a_o} to the {r}.",
    ),
    "pick_two_obj_and_place": (
        "Put two {os} in the {r}.",
        "Place two {os} on the {r}.",
        "Move a pair of {os} to the {r}.",
        "Bring both {os} to the {r}.",
        "Gather two {os} at the {r}.",
    ),
    "look_at_obj_in_light": (
        "Examine {a_o} under the {r}.",
        "Look at {a_o} by the light of the {r}.",
        "Inspect {a_o} with the {r} on.",
        "Hold {a_o} up to the {r}.",
        "Study {a_o} in the light of the {r}.",
    ),
    "pick_clean_then_place_in_recep": (
        "Put a clean {o} in the {r}.",
        "Wash {a_o} and place it on the {r}.",
        "Rinse {a_o}, then put it in the {r}.",
        "Clean {a_o} and leave it at the {r}.",
        "Place a washed {o} on the {r}.",
    ),
    "pick_heat_then_place_in_recep": (
        "Put a hot {o} in the {r}.",
        "Heat {a_o} and place it on the {r}.",
        "Warm {a_o} in the microwave, then put it in the {r}.",
        "Cook {a_o} and leave it at the {r}.",
        "Place a heated {o} on the {r}.",
    ),
    "pick_cool_then_place_in_recep": (
        "Put a cold {o} in the {r}.",
        "Chill {a_o} and place it on the {r}.",
        "Cool {a_o} in the fridge, then put it in the {r}.",
        "Refrigerate {a_o} and leave it at the {r}.",
        "Place a chilled {o} on the {r}.",
    ),
    "pick_and_place_with_movable_recep": (
        "Put {a_m} with {a_o} in it on the {r}.",
        "Place {a_o} in {a_m} and move it to the {r}.",
        "Move {a_m} holding {a_o} to the {r}.",
        "Carry {a_o} in {a_m} over to the {r}.",
        "Bring {a_m} containing {a_o} to the {r}.",
    ),
}
PREFIX_GOAL = ("{steps}.", "First {steps}.", "Your task: {steps}.", "In order: {steps}.", "Please {steps}.")


def phrasings(options: tuple[str, ...], phrasing: Phrasing) -> tuple[str, ...]:
    """The seen part of a list of phrasings, or its held-out part (for evaluation only)."""
    return options[:-HELD_OUT] if phrasing == "seen" else options[-HELD_OUT:]


def name(cls: str, sliced: bool = False) -> str:
    return f"sliced {words(cls)}" if sliced else words(cls)


def article(noun: str) -> str:
    if not noun:
        return ""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def plural(noun: str) -> str:
    if noun.endswith(("ch", "sh", "x", "s")):
        return noun + "es"
    if noun.endswith("o") and not noun.endswith("oo"):
        return noun + "es"
    return noun + "s"
