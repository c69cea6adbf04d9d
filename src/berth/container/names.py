"""Container names: validation and Docker-style random names (adjective_surname)."""

from __future__ import annotations

import random
import re

from berth.errors import InvalidParameter

VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
_ADJ = ("admiring adoring affectionate agitated amazing angry awesome blissful bold boring brave busy charming "
        "clever cool compassionate competent condescending confident cranky crazy dazzling determined distracted "
        "dreamy eager ecstatic elastic elated elegant eloquent epic exciting fervent festive flamboyant focused "
        "friendly frosty funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry "
        "infallible inspiring intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
        "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive "
        "practical priceless quirky quizzical recursing relaxed reverent romantic sad serene sharp silly sleepy "
        "stoic strange stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant "
        "vigorous wizardly wonderful xenodochial youthful zealous zen").split()
_NAMES = ("albattani allen almeida agnesi archimedes ardinghelli babbage banach bardeen bartik bassi bell "
          "bhabha bose brahmagupta brown cannon carson cerf chandrasekhar chaplygin clarke curie darwin dijkstra "
          "dubinsky easley einstein elion engelbart euclid euler fermat fermi feynman franklin galileo gauss "
          "goldberg goodall hamilton hawking heisenberg hermann hodgkin hopper hypatia jackson jennings johnson "
          "kalam kapitsa keller kepler khorana kilby knuth lamarr lamport leakey lovelace lumiere mayer mccarthy "
          "mcclintock meitner mendel merkle mirzakhani montalcini moore morse napier newton nobel noether pascal "
          "pasteur payne perlman pike poincare ptolemy raman ride ritchie rosalind sammet shamir shannon shaw "
          "sinoussi snyder solomon stonebraker swanson tesla thompson torvalds turing varahamihira villani "
          "wescoff wiles williams wilson wing wozniak wright yalow yonath").split()


def check(name: str) -> str:
    """The name without its leading slash; InvalidParameter with dockerd's wording when invalid."""
    if not VALID.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def random_name(taken: set[str]) -> str:
    for i in range(100):
        name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
        if i > 10:
            name += str(random.randint(0, 9))
        if name not in taken:
            return name
    raise InvalidParameter("could not find a free random container name")
