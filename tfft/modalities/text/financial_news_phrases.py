"""The phrase pools of the financial-news set (`financial_news.py` assembles them).

`NEWS[label]` holds the families of paraphrases of one kind of news; the generator splits
every family, and every pool of facts for mixed news, between training and test
(`paraphrases.split_pool`: items 0 and 3 train, 1 and 4 test, 2 both). The other pools
are shared by every class and both splits. `{co}` is the company; the other slots are
filled from `SLOTS`.
"""

from tfft.modalities.text.paraphrases import pick

NEWS = {
    "positive": [
        ["{co} quarterly profit jumps {pct}, beating forecasts",
         "{co} posts stronger-than-expected {quarter} earnings",
         "{co}'s net profit rose {pct} in the {quarter}, ahead of analyst estimates.",
         "Operating profit at {co} climbed to {rise} a year earlier.",
         "{co} earned more than the market had expected in the {quarter}, with net income up {pct}."],
        ["{co} raises full-year profit outlook",
         "{co} lifts its {year} sales forecast on strong demand",
         "{co} upgraded its full-year guidance after a strong first half.",
         "{co} now expects annual revenue growth of {pct}, more than it forecast in {month}.",
         "Management at {co} became more optimistic about {year}, predicting higher earnings than previously "
         "indicated."],
        ["{broker} upgrades {co} to buy from hold",
         "{broker} lifts price target on {co} to {price}",
         "{broker} raised its rating on {co} to outperform, citing improving margins.",
         "Analysts at {broker} upgraded {co} to overweight and raised their target price to {price}.",
         "{co} won a new buy recommendation from {broker}, which sees the stock gaining a further {pct}."],
        ["{co} wins {amount} contract from {client}",
         "{co} secures multi-year order worth {amount}",
         "{co} has been awarded a {amount} contract to supply {product} to {client}.",
         "{co} signed a {amount} agreement to deliver {product} to {client}, its largest order to date.",
         "{client} picked {co} as sole supplier of {product} in a deal valued at {amount}."],
        ["{co} raises dividend by {pct} and announces {amount} buyback",
         "{co} to return {amount} to shareholders through share repurchases",
         "{co} increased its quarterly dividend by {pct} to {cents} per share.",
         "The board of {co} proposed a higher dividend of {cents} per share and a new share buyback programme.",
         "Shareholders of {co} will receive a bigger payout after the company lifted its dividend {pct}."],
        ["{co} shares surge {pct} after results",
         "{co} stock hits record high on takeover interest",
         "Shares in {co} rose {pct} in early trading after the company reported record orders.",
         "{co} shares jumped to a record high after the group reported a surge in bookings.",
         "Investors piled into {co}, sending the stock up {pct} to its best level in {n_years} years."],
        ["{co}'s operating margin improved by {points} percentage points",
         "Cost savings lift {co}'s profitability",
         "{co} said its order backlog grew {pct} to a record {amount}.",
         "{co} returned to profit in the {quarter}, reporting net income of {amount} against a loss a year earlier.",
         "{co} swung back into the black as demand for its {product} recovered."],
        ["{co} no longer expects a loss for {year}",
         "{co} says job cuts will not be needed as orders recover",
         "{co}'s quarterly sales did not decline as analysts had feared, rising {pct} instead.",
         "Contrary to expectations of a loss, {co} reported a profit of {amount} for the {quarter}.",
         "Worries that {co} would have to cut its dividend proved unfounded."],
    ],
    "negative": [
        ["{co} quarterly profit falls {pct}, missing forecasts",
         "{co} posts weaker-than-expected {quarter} earnings",
         "{co}'s net profit fell {pct} in the {quarter}, below analyst estimates.",
         "Operating profit at {co} dropped to {fall} a year earlier.",
         "{co} earned less than the market had expected in the {quarter}, with net income down {pct}."],
        ["{co} cuts full-year profit outlook",
         "{co} issues profit warning as demand weakens",
         "{co} lowered its full-year guidance after a weak first half.",
         "{co} now expects annual revenue to fall by {pct}, having previously forecast growth.",
         "Management at {co} turned more cautious about {year}, predicting lower earnings than previously "
         "indicated."],
        ["{broker} downgrades {co} to sell from hold",
         "{broker} cuts price target on {co} to {price}",
         "{broker} lowered its rating on {co} to underperform, citing shrinking margins.",
         "Analysts at {broker} downgraded {co} to underweight and cut their target price to {price}.",
         "{co} lost its buy recommendation at {broker}, which sees the stock falling a further {pct}."],
        ["{co} fined {amount} by regulator over misleading sales practices",
         "{co} faces class action over accounting errors",
         "{co} is recalling {n} units of its {product} because of a safety defect.",
         "Regulators ordered {co} to pay {amount} for breaching competition rules.",
         "{co} set aside {amount} to cover claims from customers harmed by its faulty {product}."],
        ["{co} to cut {n} jobs as sales slump",
         "{co} takes {amount} writedown on struggling unit",
         "{co} announced plans to close two plants and lay off {n} workers.",
         "{co} booked an impairment charge of {amount} on its {product} business.",
         "Falling demand forces {co} to shed {n} staff and shut its {city} factory."],
        ["{co} shares slump {pct} after results",
         "{co} stock hits multi-year low amid debt worries",
         "Shares in {co} fell {pct} in early trading after the company reported weak orders.",
         "{co} shares tumbled to their lowest level since {past_year} after the group reported a drop in bookings.",
         "{agency} downgraded {co}'s credit rating to junk, citing its rising debt."],
        ["{co} suspends dividend to preserve cash",
         "{co} slashes payout after profit slump",
         "{co} swung to a net loss of {amount} in the {quarter} from a profit a year earlier.",
         "{co} reported a wider-than-expected quarterly loss of {amount}.",
         "{co} slid into the red as demand for its {product} dried up."],
        ["{co} fails to meet its own profit target",
         "{co} will not pay a dividend for {year}",
         "{co} did not raise its guidance, disappointing investors who had hoped for an upgrade.",
         "{co} no longer expects revenue to grow this year.",
         "Analysts see no sign yet of a recovery in {co}'s order intake."],
    ],
    "neutral": [
        ["{co}'s net sales in {year} totalled {amount}, and its operating margin was {pct}.",
         "Revenue at {co} came to {amount} for the {quarter}, with earnings per share of {cents}.",
         "{co} reported {quarter} revenue of {amount}, in line with analyst expectations.",
         "Operating profit amounted to {amount}, unchanged from the year-earlier period.",
         "For the twelve months, {co}'s turnover stood at {amount} and its pre-tax profit at {amount2}."],
        ["{co} will publish its {quarter} results on {date}",
         "{co} to report {quarter} earnings before the market opens on {date}",
         "{co} will hold its annual general meeting on {date} in {city}.",
         "{co} said it would release its interim report on {date}, followed by a conference call for analysts.",
         "The earnings announcement from {co} is scheduled for {date}."],
        ["{co} keeps full-year guidance unchanged",
         "{co} reaffirms {year} outlook",
         "{broker} reiterated its hold rating on {co} with a price target of {price}.",
         "{co} maintained its forecast of revenue growth of around {pct} for {year}.",
         "{broker} left its neutral recommendation on {co} as it was, keeping the target at {price}."],
        ["{co} appoints {person} as chief financial officer",
         "{co} names {person} head of its {product} division",
         "{person} will succeed {predecessor} as chief executive of {co} on {date}.",
         "{co} said {person} would join the board as a non-executive director.",
         "The board of {co} has chosen {person} to take over as finance director from {date}."],
        ["The acquisition of {target} by {co} is expected to close in the {half}, subject to regulatory approval.",
         "{co}'s purchase of {target} still needs the approval of competition authorities and should complete by "
         "the end of {year}.",
         "{co} said the transaction will be financed with cash and existing credit lines.",
         "{co} and {target} have signed a non-binding letter of intent; the terms were not disclosed.",
         "Financial details of the agreement between {co} and {target} were not made public."],
        ["{co} declines to comment on merger speculation",
         "{co} says it does not comment on market rumours",
         "{co} makes {product} and employs about {n} people in {countries} countries.",
         "{co} is listed on {exchange} and is a member of the {index} index.",
         "Based in {city}, {co} sells its {product} mainly to industrial customers."],
        ["{co} declared a quarterly dividend of {cents} per share, unchanged from the previous quarter.",
         "{co} will pay the same dividend as last year, {cents} a share.",
         "{co} will pay its dividend on {date} to shareholders on record as of {date2}.",
         "{co} plans to issue {amount} of bonds maturing in {maturity} to refinance existing debt.",
         "{co} priced {amount} of senior notes due {maturity} at par."],
        ["{co} said the strike had no material effect on its results.",
         "The change in accounting rules will not affect {co}'s reported earnings, the company said.",
         "{co} neither raised nor lowered its forecast for {year}.",
         "{co}'s share price was little changed after the announcement, closing at {price}.",
         "Shares in {co} ended the session flat at {price} as investors awaited the results."],
        ["Higher sales at {co} were offset by rising costs, leaving operating profit flat at {amount}.",
         "{co}'s gains in Europe balanced out weaker demand in Asia, and revenue was unchanged at {amount}.",
         "Growth in {co}'s services business made up for lower equipment sales, keeping quarterly revenue steady.",
         "A rise in volumes at {co} was cancelled out by lower prices, so net sales were level with a year earlier.",
         "At {co}, stronger margins compensated for a dip in volumes, and earnings matched last year's."],
    ],
}

# Mixed news joins a detail going one way and headline news going the other with one of
# `CONTRASTS`, the headline news last: it decides the label. Good and bad facts at one
# position mirror each other.
GOOD_HEADLINE_FACTS = [
    "{co} raised its full-year forecast",
    "{co} beat analysts' profit estimates",
    "{co}'s net profit climbed {pct}",
    "{co} returned to profit",
    "{co} lifted its long-term margin target",
]
BAD_HEADLINE_FACTS = [
    "{co} cut its full-year forecast",
    "{co} missed analysts' profit estimates",
    "{co}'s net profit declined {pct}",
    "{co} swung to a loss",
    "{co} warned that profit would fall this year",
]
GOOD_DETAILS = [
    "{co}'s quarterly revenue rose {pct2}",
    "orders at {co} hit a record",
    "{co}'s operating margin widened",
    "{co} won its biggest contract to date",
    "{co} increased its dividend",
    "{co} announced a larger share buyback",
    "{co} generated record cash flow",
]
BAD_DETAILS = [
    "{co}'s quarterly revenue fell {pct2}",
    "orders at {co} dropped sharply",
    "{co}'s operating margin narrowed",
    "{co} lost a major customer",
    "{co} suspended its dividend",
    "{co} booked a {amount} writedown",
    "{co}'s costs rose faster than expected",
]
CONTRASTS = ["{x}, but {y}", "although {x}, {y}", "{x}; however, {y}", "{x}, yet {y}", "while {x}, {y}"]

# Shared by every class and both splits: background that carries no sentiment.
BACKGROUND = [
    "The company employs about {n} people.", "{co} is based in {city}.",
    "The figures were published before the market opened.", "Full-year results are due in {month}.",
    "{co} will give more details at its capital markets day.", "The company did not give a reason.",
    "{co} is listed on {exchange}.",
]
DATELINES = ["HELSINKI (Newswire) - ", "LONDON, {date} - ", "OSLO (Market Wire) -- ",
             "NEW YORK, {date} (Newswire) - ", "AMSTERDAM - ", "FRANKFURT (Market Wire) - "]
WIRE_TAGS = ["UPDATE 1-", "UPDATE 2-", "BRIEF-", "REFILE-"]
COMPANIES = [
    "Norvik Steel", "Halden Pharma", "Brightwater Energy", "Kestrel Freight", "Aurora Bancorp", "Meridian Food Group",
    "Solvane Chemical", "Tessaro Auto", "Quillon Software", "Baltic Forest", "Orsa Mining", "Veltro Telecom",
    "Harbourline Shipping", "Cobalt Ridge Gold", "Lumio Retail", "Strand Insurance",
]


def _money(rng):
    """A way of writing amounts (currency and unit) and a value of the right size."""
    currency = pick(rng, ["EUR ", "$", "GBP ", "SEK ", "€", "£", "USD "])
    unit = pick(rng, [" million", " mn", "m", " billion", "bn"])
    value = float(rng.uniform(1.2, 18.0) if "b" in unit else rng.uniform(4.0, 950.0))
    return (lambda v: f"{currency}{v:,.1f}{unit}"), value


def _amount(rng):
    write, value = _money(rng)
    return write(value)


def _change(low, high):
    """A slot "NEW from OLD", the new amount `low` to `high` times the old one."""
    def change(rng):
        write, old = _money(rng)
        return f"{write(old * float(rng.uniform(low, high)))} from {write(old)}"

    return change


def _percent(rng):
    value = float(rng.uniform(1.5, 35.0))
    number = f"{value:.0f}" if rng.random() < 0.5 else f"{value:.1f}"
    return number + pick(rng, ["%", "%", " percent", " per cent"])


SLOTS = {
    "amount": _amount, "amount2": _amount, "rise": _change(1.06, 1.6), "fall": _change(0.5, 0.94),
    "pct": _percent, "pct2": _percent,
    "points": ["0.8", "1.5", "2", "3.1", "1.2"],
    "quarter": ["first quarter", "second quarter", "third quarter", "fourth quarter", "first half",
                "January-March period"],
    "half": ["first half of next year", "second half of the year", "coming months", "fourth quarter"],
    "year": ["2024", "2025", "2026"], "past_year": ["2009", "2012", "2016", "2020"],
    "maturity": ["2029", "2031", "2034"],
    "month": ["February", "April", "July", "October"],
    "date": ["24 October", "March 3", "February 12", "July 29", "5 November"],
    "date2": ["April 30", "2 June", "September 15"],
    "broker": ["Morgan Brothers", "Nordhaven Securities", "Carver & Finch", "Atlas Capital Markets",
               "Pemberton Research", "Kite Equity"],
    "agency": ["Moody's", "S&P Global Ratings", "Fitch"],
    "price": ["$48", "EUR 12.50", "310 pence", "$112", "SEK 96", "EUR 7.80"],
    "cents": ["EUR 0.45", "$0.32", "12 pence", "EUR 1.10", "$0.85"],
    "client": ["Eastline Rail", "the city of Rotterdam", "Pacifica Airlines", "the Finnish Defence Forces",
               "Grainmark", "Helix Hospitals"],
    "target": ["Eastline Rail", "Grainmark", "Helix Hospitals", "Nordbrand Dairy", "Vantor Systems"],
    "product": ["wind turbines", "paper machines", "cloud software", "electric buses", "medical scanners",
                "packaging board", "network equipment"],
    "n": ["120", "450", "1,200", "3,000", "800", "2,500"], "n_years": ["two", "five", "ten"],
    "countries": ["12", "30", "45"],
    "person": ["Anna Virtanen", "Mark Oduya", "Laura Chen", "Pieter de Vries"],
    "predecessor": ["Sofia Marquez", "James Whitfield", "Henrik Lund"],
    "exchange": ["Nasdaq Helsinki", "the New York Stock Exchange", "the London Stock Exchange", "Euronext Amsterdam",
                 "Nasdaq Stockholm"],
    "index": ["OMX Helsinki 25", "FTSE 250", "S&P 500", "AEX", "DAX"],
    "city": ["Helsinki", "Oslo", "Rotterdam", "Chicago", "Leeds", "Lyon"],
}
