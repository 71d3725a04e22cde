"""The allocation arithmetic of information bags, free of I/O: the available bags shared over
the municipalities with waiting orders in proportion to population (the largest-remainder
method, capped at what each still needs), each municipality's share split over its orders
oldest first, and every share explained in plain words, in English and in Dutch."""
import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Claim:
    """What one municipality waits for in an allocation round."""
    code: str
    name: str
    population: int          # 0 when unknown
    demand: int              # bags its waiting orders still need
    since: object            # when its oldest waiting order came in: first come, first served


@dataclass(frozen=True)
class Share:
    """A municipality's bags in a round and how the arithmetic got there."""
    claim: Claim
    bags: int
    quota: Fraction          # its exact proportional share of ``pool``
    pool: int                # the bags shared in the stage it was settled in
    pool_population: int     # the population that shared them (0: shared equally)
    pool_size: int           # how many municipalities shared them
    capped: bool             # its quota covered all it needed: it got exactly that
    remainders: int = 0      # bags of that stage given out by largest remainder
    remainder_bag: bool = False
    tied_with: int = 0       # others with the same remainder across the cut-off


def _weights(claims):
    """Population, or equal weights when no one still waiting has a known population."""
    weights = {c.code: max(c.population, 0) for c in claims}
    if any(weights.values()):
        return weights, sum(weights.values())
    return {c.code: 1 for c in claims}, 0


def largest_remainder(available, claims):
    """Shares ``available`` bags over the claims in proportion to population (Hamilton's
    largest-remainder method) without giving anyone more than its demand: a claim whose exact
    quota covers its demand gets its demand, and the rest is shared again over the others.
    The whole bags left after rounding down go to the largest remainders; a tie goes to the
    larger population, then to the municipality that has waited longest, then by code.
    Every bag is given out as long as demand lasts. Returns one Share per claim."""
    remaining = available
    open_claims = [c for c in claims if c.demand > 0]
    shares = {c.code: Share(c, 0, Fraction(0), 0, 0, 0, c.demand == 0) for c in claims}
    while remaining > 0 and open_claims:
        weights, population = _weights(open_claims)
        total = sum(weights.values())
        quotas = {c.code: Fraction(remaining * weights[c.code], total) for c in open_claims}
        capped = [c for c in open_claims if quotas[c.code] >= c.demand]
        stage = dict(pool=remaining, pool_population=population, pool_size=len(open_claims))
        if capped:
            for claim in capped:
                shares[claim.code] = Share(claim, claim.demand, quotas[claim.code],
                                           capped=True, **stage)
            remaining -= sum(c.demand for c in capped)
            open_claims = [c for c in open_claims if c not in capped]
            continue
        floors = {code: math.floor(quota) for code, quota in quotas.items()}
        left = remaining - sum(floors.values())
        ranked = sorted(open_claims, key=lambda c: (-(quotas[c.code] - floors[c.code]),
                                                     -c.population, c.since, c.code))
        cut = quotas[ranked[left - 1].code] - floors[ranked[left - 1].code] if left else None
        after_cut = (quotas[ranked[left].code] - floors[ranked[left].code]
                     if 0 < left < len(ranked) else None)
        tied = ({c.code for c in ranked if quotas[c.code] - floors[c.code] == cut}
                if cut is not None and cut == after_cut else set())
        for position, claim in enumerate(ranked):
            won = position < left
            shares[claim.code] = Share(
                claim, floors[claim.code] + won, quotas[claim.code], capped=False,
                remainders=left, remainder_bag=won,
                tied_with=len(tied) - 1 if claim.code in tied else 0, **stage)
        remaining = 0
    return [shares[c.code] for c in claims]


def split_over_orders(bags, orders):
    """A municipality's bags over its waiting orders, oldest first, each up to what it
    still needs. ``orders``: (order id, still needed) oldest first. Returns bags per order."""
    given = []
    for order_id, needed in orders:
        now = min(bags, needed)
        given.append((order_id, now))
        bags -= now
    return given


# The words of an explanation, in each language the platform answers it in: one sentence
# builder (``_share_words``, ``_order_words``) fills either table.
ENGLISH = {
    "number": lambda n: f"{n:,}",
    "decimal": lambda x: f"{x:,.2f}",
    "bags": lambda n: f"{n:,} bag" + ("" if n == 1 else "s"),
    "nothing_left": "{place}: no bags were left to share in this round.",
    "pool_after": ("the {pool} left once {gone} went to municipalities whose share covered "
                   "all they needed"),
    "basis": ("its population of {population} out of {pool_population} in the {pool_size} "
              "municipalities sharing {pool}"),
    "basis_equal": ("no population known for the {pool_size} municipalities sharing {pool}: "
                    "an equal part"),
    "capped": ("{place} still needed {demand_bags}, no more than its exact share of {quota} "
               "({basis}): it gets all {demand}."),
    "gets": "{place} gets {bags}: {basis} gives an exact share of {quota}; ",
    "largest_one": "the largest remainder",
    "largest_many": "one of the {remainders} largest remainders",
    "plus_one": "{whole} whole plus 1 for {largest} ({fraction}).",
    "not_largest_one": "the largest",
    "not_largest_many": "among the {remainders} largest",
    "not_largest": "{whole} whole; its remainder ({fraction}) was not {largest}.",
    "exact": "{whole} whole, nothing left over to round.",
    "others_one": "other", "others_many": "others", "got": "got", "missed": "missed",
    "tied": (" It tied on that remainder with {tied} {others} and {outcome} the extra bag by "
             "the tie rule: larger population first, then the longest waiting."),
    "only_order": "its only waiting order",
    "nth_order": "number {position} of its {count} waiting orders, oldest first",
    "nothing_now": " This order, {which}, gets nothing this round; it waits for {still}.",
    "all_needed": ": all it still needed.",
    "waits_more": "; it waits for {more} more.",
    "order_gets": " This order, {which}, gets {now}{rest}",
}


def _dutch_number(text):
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


DUTCH = {
    "number": lambda n: _dutch_number(f"{n:,}"),
    "decimal": lambda x: _dutch_number(f"{x:,.2f}"),
    "bags": lambda n: _dutch_number(f"{n:,}") + (" tas" if n == 1 else " tassen"),
    "nothing_left": "{place}: in deze ronde waren er geen tassen meer te verdelen.",
    "pool_after": ("de {pool} die over waren nadat {gone} naar gemeenten gingen die daarmee "
                   "alles kregen wat ze nodig hadden"),
    "basis": ("haar {population} inwoners van de {pool_population} in de {pool_size} "
              "gemeenten die {pool} delen"),
    "basis_equal": ("van de {pool_size} gemeenten die {pool} delen is geen inwonertal bekend: "
                    "een gelijk deel"),
    "capped": ("{place} had nog {demand_bags} nodig, niet meer dan haar precieze aandeel van "
               "{quota} ({basis}): zij krijgt ze alle {demand}."),
    "gets": "{place} krijgt {bags}: {basis} geeft een precies aandeel van {quota}; ",
    "largest_one": "de grootste rest",
    "largest_many": "een van de {remainders} grootste resten",
    "plus_one": "{whole} hele plus 1 voor {largest} ({fraction}).",
    "not_largest_one": "de grootste",
    "not_largest_many": "een van de {remainders} grootste",
    "not_largest": "{whole} hele; haar rest ({fraction}) was niet {largest}.",
    "exact": "{whole} hele, niets over om af te ronden.",
    "others_one": "andere gemeente", "others_many": "andere gemeenten", "got": "kreeg",
    "missed": "miste",
    "tied": (" Zij had dezelfde rest als {tied} {others} en {outcome} de extra tas door de "
             "regel bij gelijke stand: eerst het grootste inwonertal, dan wie het langst "
             "wacht."),
    "only_order": "haar enige wachtende bestelling",
    "nth_order": "nummer {position} van haar {count} wachtende bestellingen, oudste eerst",
    "nothing_now": " Deze bestelling, {which}, krijgt in deze ronde niets; zij wacht op {still}.",
    "all_needed": ": alles wat zij nog nodig had.",
    "waits_more": "; zij wacht nog op {more}.",
    "order_gets": " Deze bestelling, {which}, krijgt {now}{rest}",
}


def _share_words(share, available, words=ENGLISH):
    claim = share.claim
    place = f"{claim.name} ({claim.code})" if claim.name else claim.code
    number, bags = words["number"], words["bags"]
    if share.pool == 0:
        return words["nothing_left"].format(place=place)
    pool = bags(share.pool)
    if share.pool < available:
        pool = words["pool_after"].format(pool=pool, gone=bags(available - share.pool))
    if share.pool_population:
        basis = words["basis"].format(population=number(claim.population),
                                      pool_population=number(share.pool_population),
                                      pool_size=share.pool_size, pool=pool)
    else:
        basis = words["basis_equal"].format(pool_size=share.pool_size, pool=pool)
    quota = words["decimal"](float(share.quota))
    if share.capped:
        return words["capped"].format(place=place, demand_bags=bags(claim.demand), quota=quota,
                                      basis=basis, demand=number(claim.demand))
    whole = number(share.bags - share.remainder_bag)
    fraction = words["decimal"](float(share.quota - math.floor(share.quota)))
    one = share.remainders == 1
    text = words["gets"].format(place=place, bags=bags(share.bags), basis=basis, quota=quota)
    if share.remainder_bag:
        largest = words["largest_one" if one else "largest_many"].format(
            remainders=share.remainders)
        text += words["plus_one"].format(whole=whole, largest=largest, fraction=fraction)
    elif share.remainders:
        largest = words["not_largest_one" if one else "not_largest_many"].format(
            remainders=share.remainders)
        text += words["not_largest"].format(whole=whole, fraction=fraction, largest=largest)
    else:
        text += words["exact"].format(whole=whole)
    if share.tied_with:
        text += words["tied"].format(
            tied=share.tied_with,
            others=words["others_one" if share.tied_with == 1 else "others_many"],
            outcome=words["got" if share.remainder_bag else "missed"])
    return text


def _order_words(position, count, now, still_needed, words=ENGLISH):
    number = words["number"]
    which = (words["only_order"] if count == 1
             else words["nth_order"].format(position=position, count=count))
    if now == 0:
        return words["nothing_now"].format(which=which, still=number(still_needed))
    rest = (words["all_needed"] if now == still_needed
            else words["waits_more"].format(more=number(still_needed - now)))
    return words["order_gets"].format(which=which, now=number(now), rest=rest)


class Explanation(str):
    """A share's explanation in plain English words (the string itself, as the contract's
    ``explanation`` has it), with the same in Dutch as ``dutch`` for the campaign team's page."""

    def __new__(cls, english, dutch):
        made = super().__new__(cls, english)
        made.dutch = dutch
        return made


def allocation_round(available, waiting, municipalities):
    """One round over the waiting orders (oldest first) with ``available`` bags in stock.
    ``municipalities``: code -> read-model entry (name, population). Returns
    [(order, bags now, explanation)] in the order of ``waiting``; each explanation is an
    ``Explanation``, English with its Dutch as ``dutch``."""
    by_code = {}
    for order in waiting:
        by_code.setdefault(order["municipality_code"], []).append(order)
    claims = []
    for code, orders in by_code.items():
        known = municipalities.get(code) or {}
        claims.append(Claim(code, known.get("name") or "", known.get("population") or 0,
                            sum(still_needed(o) for o in orders),
                            min(o["created_at"] for o in orders)))
    given, words = {}, {}
    for share in largest_remainder(available, claims):
        orders = by_code[share.claim.code]
        split = split_over_orders(share.bags, [(o["_id"], still_needed(o)) for o in orders])
        for position, (order, (_, now)) in enumerate(zip(orders, split), start=1):
            given[order["_id"]] = now
            words[order["_id"]] = Explanation(*(
                _share_words(share, available, language)
                + _order_words(position, len(orders), now, still_needed(order), language)
                for language in (ENGLISH, DUTCH)))
    return [(order, given[order["_id"]], words[order["_id"]]) for order in waiting]


def still_needed(order):
    return order["quantity_requested"] - order["quantity_allocated"]
