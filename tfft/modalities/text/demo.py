"""Customer-support tickets for text-classification demos and tests that must run offline.

Six classes of English support tickets, each assembled from a greeting, context sentences,
one or two statements of the problem, details, a request and a sign-off. The problem
statements come in paraphrase families (one family per sub-issue, e.g. "charged twice"),
and every family, request pool and detail pool is split three ways: phrases only for the
training split, phrases only for the test split, and a few shared by both. Test tickets
therefore say the same things as training tickets in partly different words, which is
easy for a model that understands language and hard for one that counts words. Words such
as "account", "order", "app" and "payment" occur in several classes, and some tickets are
lowercased, shouted or carry typos. The pools are split and filled, the noise added and
the tickets drawn by `paraphrases`, as for the other text demo sets.
"""

import json
import os
import tempfile

from tfft.data import generated
from tfft.data.checks import check_int
from tfft.errors import DataError
from tfft.modalities.text.paraphrases import (
    add_typos, class_splits, fill, pick, sentence, split_pool, write_csv,
)

SUPPORT_TICKET_CLASSES = (
    "account_access", "billing", "bug", "feature_request", "refund", "shipping"
)
TICKETS_CSV = "tickets.csv"
TICKETS_TEST_CSV = "tickets_test.csv"

# Bump when the phrase pools or the assembly change, so older sets are regenerated.
_VERSION = 2

# Problem statements: per class, families of paraphrases of one sub-issue. Statements start
# in lower case (or with "I" or a slot) so that they can follow a lead-in such as "I'm
# writing because"; questions and requests never do (see `_NO_LEAD`).
_CORE = {
    "billing": [
        ["I was charged twice for the same order",
         "my card got debited two times for a single purchase",
         "there is a duplicate charge on my card",
         "you took the payment twice this month",
         "the same amount was taken from my bank on two separate days"],
        ["the invoice shows {amount} but my plan should cost less",
         "my latest bill is higher than the price I signed up for",
         "I was overcharged on my last payment",
         "the charge on my card doesn't match the price on your website",
         "my statement lists {amount}, which is more than what I agreed to pay"],
        ["there's a charge from you that I don't recognize",
         "I see a transaction from your company on my bank statement that I never authorized",
         "I have no idea what this {amount} charge is for",
         "an unexpected charge of {amount} showed up on my credit card",
         "a mysterious debit of {amount} appeared in my bank account"],
        ["I need a proper invoice with my company's VAT number for my expenses",
         "could you send me a receipt for my last payment for my tax records?",
         "I can't find the invoice for my {plan} anywhere",
         "the invoice you emailed me has the wrong company name and address on it",
         "my accountant needs an itemised statement of what I paid last quarter"],
        ["I need to update the credit card on file because my old one expired",
         "my bank replaced my card and I want to switch my payment details to the new one",
         "I'd like to pay by PayPal instead of card from now on",
         "the payment keeps getting declined even though my card works everywhere else",
         "your system refuses my new debit card when I try to save it as the payment method"],
        ["my monthly price went up from {amount} without any notice",
         "the cost of my subscription increased and I never received a warning about it",
         "why did the price of my {plan} change?",
         "I was charged the full price even though I applied a discount code",
         "the promo code I entered at checkout was not taken off the total"],
    ],
    "refund": [
        ["I'd like a refund for {product}",
         "I want my money back for {product}",
         "please refund my purchase of {product}",
         "I'm requesting a full refund for {product} that I bought {day}",
         "can I be reimbursed for {product}? It isn't what I expected"],
        ["I want to return {product} because it doesn't suit my needs and get a refund",
         "I'd like to send {product} back and be reimbursed",
         "how do I return {product} for a refund?",
         "I need a return label so I can ship {product} back to you for my money",
         "I'm sending back {product} and expect to be paid back in full"],
        ["I want to cancel my {plan} and get refunded for the unused months",
         "please terminate my {plan} and give me back what I paid for the rest of the year",
         "I cancelled my {plan} but I still want the remaining balance back",
         "cancel my subscription effective today and refund the renewal fee",
         "I'd like to end my membership and be compensated for the time I won't use"],
        ["I was promised a refund {day} but it still hasn't shown up",
         "the money you said you'd return has not reached my account yet",
         "where is my refund?",
         "my refund was approved weeks ago and I still haven't received it",
         "it's been over two weeks since you confirmed the reimbursement and nothing has come through"],
        ["the service was nothing like what was advertised, so I want a refund",
         "your product didn't deliver what was promised and I expect my money back",
         "I'm not satisfied with {product} and would like a refund",
         "I'm unhappy with the quality and want the purchase refunded",
         "this was a waste of money and I want to be paid back"],
        ["I bought {product} by mistake and want to undo the purchase and get refunded",
         "I accidentally ordered the wrong item and would like the money returned",
         "I upgraded to the {plan} by accident, can you reverse it and refund me?",
         "my kid made a purchase without permission and I need a refund",
         "I clicked buy by accident, please cancel it and send the money back to me"],
    ],
    "account_access": [
        ["I can't log into my account",
         "I'm unable to sign in to my profile",
         "I can't get into my account anymore",
         "the login keeps telling me my credentials are wrong",
         "every time I try to access my account it says the username or password is incorrect"],
        ["the password reset email never arrives",
         "I requested a new password several times but no link shows up in my inbox",
         "I forgot my password and the reset link doesn't come",
         "I clicked forgot password but didn't get any email",
         "the recovery message to reset my passcode never reaches me, not even in spam"],
        ["my account is locked after too many attempts",
         "I've been shut out of my profile",
         "my account got suspended and I don't know why",
         "it says my account has been temporarily blocked",
         "the system froze my login after I mistyped my password a few times"],
        ["I'm not receiving the two-factor code by text",
         "the verification code for signing in never comes to my phone",
         "I lost the phone I use for two-step verification",
         "the authenticator code is rejected every time",
         "the one-time security code doesn't arrive so I can't finish signing in"],
        ["I no longer have access to the email address on my account",
         "my old work email was deactivated and it's the one linked to my login",
         "I need to change the email I use to sign in",
         "I want to update my login email because I changed jobs",
         "the address registered to my profile doesn't exist anymore, so I can't recover it"],
        ["I think someone hacked my account and changed the password",
         "somebody else seems to have taken over my profile",
         "I got an alert about a login from a country I've never been to",
         "my password was changed without my knowledge",
         "a stranger accessed my account and now I can't sign in"],
    ],
    "shipping": [
        ["my order hasn't arrived yet",
         "the package still hasn't been delivered",
         "I'm still waiting for my order {order}",
         "it's been two weeks and {product} never showed up",
         "the parcel I was expecting {day} is nowhere to be seen"],
        ["the tracking number hasn't updated in days",
         "the shipment status has been stuck on 'in transit' for a week",
         "the tracking page says label created but nothing since",
         "tracking shows my order sitting at the {carrier} depot",
         "the courier's website shows no movement on my parcel since Monday"],
        ["tracking says delivered but there's no package at my door",
         "{carrier} claims the parcel was dropped off but I never got it",
         "it was marked as delivered {day} but I don't have it",
         "the delivery confirmation says it was left on my porch but nothing is there",
         "the status says handed over to the recipient, yet nobody here received anything"],
        ["I entered the wrong shipping address for my order",
         "I need my parcel sent to a different street than the one I typed",
         "can I change the delivery address on order {order}?",
         "I moved last week and the package is going to my old address",
         "the shipment should be redirected to my new home"],
        ["{product} arrived damaged and the box was crushed",
         "the parcel came torn open with the item inside broken",
         "my delivery showed up smashed",
         "the item was broken when the courier handed it over",
         "the shipment reached me dented and cracked"],
        ["when will my order be shipped?",
         "how long until my purchase leaves the warehouse?",
         "my order still says processing and hasn't shipped",
         "I paid for express shipping but it's taking forever",
         "I chose next-day delivery and it's been four days"],
    ],
    "bug": [
        ["the app crashes every time I open it",
         "the application shuts down as soon as I launch it",
         "the app keeps crashing on my {device}",
         "it freezes and closes itself when I tap the settings tab",
         "the program quits unexpectedly whenever I try to upload a photo"],
        ["I get an error 500 when I try to save my changes",
         "a message saying 'something went wrong' pops up when I press save",
         "I keep getting an error on the checkout page",
         "the page shows an internal server error",
         "an unknown error code appears every time I submit the form"],
        ["the dashboard won't load, it's just a blank white screen",
         "the website stays empty and never finishes loading in {browser}",
         "the page is stuck on the loading spinner",
         "after I log in nothing loads and the screen just stays white",
         "the site hangs forever and displays nothing"],
        ["my data isn't syncing between my phone and my laptop",
         "changes I make on the web don't show up on the mobile app",
         "my saved files disappeared after the last update",
         "the app lost all my notes after the update",
         "since the new version, my settings reset themselves every day"],
        ["the export button doesn't do anything when I click it",
         "pressing the share option has no effect at all",
         "the search function returns no results even for things I know exist",
         "notifications stopped working after the latest update",
         "I no longer get any alerts since I installed the new version"],
        ["the app is extremely slow and laggy since the update",
         "everything takes ages to respond on my {device}",
         "the app drains my battery and makes my phone hot",
         "scrolling is choppy and the screen stutters constantly",
         "it has become painfully sluggish, each tap takes several seconds"],
    ],
    "feature_request": [
        ["it would be great if the app had a dark mode",
         "please consider adding a night theme to the interface",
         "I'd love a dark theme option",
         "could you add a darker colour scheme for use at night?",
         "a black background setting would be easier on my eyes"],
        ["I'd like to be able to export my data to a spreadsheet",
         "an option to download my records as an Excel file would be really helpful",
         "please add a CSV export",
         "it would help if I could export reports as PDF",
         "being able to save my history in a format I can open in Google Sheets would be useful"],
        ["do you have plans to integrate with Google Calendar?",
         "connecting your service to Slack would make my life easier",
         "please add an integration with Outlook",
         "I wish the app could sync with my Apple Health data",
         "a Zapier connection would let me automate my workflow"],
        ["I'd like to be able to invite my team members and give them separate logins",
         "could you make it possible for several people to collaborate on the same project?",
         "please add a way to share lists with other users",
         "it would be useful to set different permission levels for each user",
         "a shared workspace for my colleagues would be a great addition"],
        ["please make the app work offline",
         "I'd appreciate being able to use it without an internet connection",
         "is there any plan for a tablet version?",
         "I would love a desktop version for Mac",
         "a version for Linux would be very welcome"],
        ["I'd love to be able to schedule reminders",
         "it would be handy to get a notification before each deadline",
         "please let us customise the home screen",
         "could you add the option to rearrange the menu?",
         "it would be nice to pick which widgets appear on my dashboard"],
    ],
}

# What the customer asks for, per class; split like the problem statements.
_ASK = {
    "billing": [
        "Can you explain what this charge is for?", "Please correct my bill.",
        "Could someone from accounts check my billing?", "Please fix the invoice.",
        "Could you clarify the amounts on my statement?",
        "Please make sure I'm only charged what my plan costs.",
        "Let me know how the fee was calculated.", "Please update my billing details.",
        "Could you look into the charges on my account?",
        "I just want the numbers on my invoice to be right.",
    ],
    "refund": [
        "Please process the refund as soon as possible.",
        "How long will the reimbursement take?", "I'd appreciate a full refund.",
        "Please send the refund to my original payment method.",
        "Let me know when I can expect the money back.",
        "Please confirm once the refund has been issued.",
        "I expect to be reimbursed in full.", "Please return the money to my card.",
        "Tell me what I need to do to get my money back.",
        "I'd like the full amount credited back.",
    ],
    "account_access": [
        "Please help me get back into my account.", "Can you restore my access?",
        "Could you reset my password manually?",
        "How do I regain access to my profile?",
        "Please verify my identity and let me sign in again.",
        "Can you unlock it for me?", "Please send me a working reset link.",
        "What do I need to do to log in again?", "Please secure my account.",
        "I need access back today.",
    ],
    "shipping": [
        "Can you tell me where my package is?", "Please send a replacement.",
        "Could you check with the courier?", "When can I expect delivery?",
        "Please give me an updated delivery date.", "Can you track it down for me?",
        "Please arrange a new shipment.", "Could you contact the carrier for me?",
        "Please let me know when it will actually arrive.",
        "I need it delivered before the weekend.",
    ],
    "bug": [
        "Is this a known bug?", "Please fix this as soon as possible.",
        "Is there a workaround?", "Can your developers look into it?",
        "I can send screenshots or logs if that helps.",
        "Please let me know when a fix is released.",
        "Could your technical team investigate?", "Is anyone else seeing this?",
        "How can I get it working again?", "Please patch this in the next update.",
    ],
    "feature_request": [
        "Any chance this could be added in a future update?", "Is this on your roadmap?",
        "I think a lot of users would appreciate it.",
        "Thanks for considering my suggestion.", "Just a suggestion!",
        "Would you consider building this?", "It would make the product even better.",
        "Please pass this idea on to your product team.",
        "I'd be happy to test it when it's ready.", "Hope you can add it soon.",
    ],
}

# Supporting details, per class; split like the problem statements.
_DETAIL = {
    "billing": [
        "The charge was {amount} on {date}.", "My invoice number is INV-{number}.",
        "The card ends in {digits}.", "Both charges were for {amount}.",
        "It's on the statement dated {date}.",
        "I'm on the {plan}, which should be {amount} a month.",
        "My bank shows it as pending.", "I double-checked with my bank already.",
    ],
    "refund": [
        "I bought it {day} for {amount}.", "The order number is {order}.",
        "It's still unopened in the original box.", "I paid {amount} with my card.",
        "I've already packed it up.", "I cancelled through the app {day}.",
        "I have the receipt.", "It was a gift and the recipient didn't want it.",
    ],
    "account_access": [
        "My username is {user}.", "I've tried resetting it {count} times.",
        "I've cleared my cookies and tried another browser.",
        "I'm trying on my {device}.", "The email on the account is {user}@example.com.",
        "I can answer the security questions.", "I haven't changed anything recently.",
        "It worked fine until {day}.",
    ],
    "shipping": [
        "The order number is {order}.", "It was shipped with {carrier}.",
        "The tracking number is 1Z{number}{digits}.", "I ordered it {day}.",
        "The estimated delivery date was {date}.", "Someone was home all day.",
        "My neighbours haven't seen it either.", "It's a gift, so timing matters.",
    ],
    "bug": [
        "I'm on version {version} on my {device}.", "I'm using {browser} on a {device}.",
        "It started after the latest update.", "I've attached a screenshot of the error.",
        "Reinstalling didn't help.", "It happens about {count} times a day.",
        "Restarting my {device} made no difference.", "My colleague has the same problem.",
    ],
    "feature_request": [
        "I use the app daily for work.", "Many of my colleagues want the same thing.",
        "Other tools already offer this.", "It would save me a lot of time.",
        "Right now I have to do it by hand.", "I'd even pay extra for it.",
        "Our whole team would benefit.", "It's the one thing I miss.",
    ],
}

# Shared by every class and both splits: they carry no class and dilute word counts.
_GREETINGS = [
    "Hi,", "Hello,", "Hi there,", "Dear support team,", "Good morning,", "Hey,",
    "Hello support,", "To whom it may concern,", "Hi team,", "Good afternoon,", "", "",
]
_CONTEXT = [
    "I've been a customer for {count} years.", "I placed an order {day}.",
    "I mostly use the app on my {device}.", "My account is registered under this email.",
    "I'm on the {plan}.", "My payment details haven't changed.",
    "My order number is {order}, in case you need it.", "I use {product} every day.",
    "I'm writing from my {device}.", "I already checked your help center.",
    "I tried calling but couldn't get through.", "This is my second message about this.",
    "I love your service overall.", "We use your software at work.",
    "I have the app and the website account.", "My subscription renews every month.",
]
_LEADS = [
    "I'm writing because {core}.", "Just so you know, {core}.", "Quick note: {core}.",
    "So, {core}.", "Basically, {core}.", "Long story short, {core}.",
]
# Requests and questions read badly after a lead-in such as "I'm writing because".
_NO_LEAD = ("please", "cancel", "could", "can ", "how", "when", "where", "why", "do ")
_CLOSINGS = [
    "This is really frustrating.", "I need this sorted today.", "It's quite urgent.",
    "Thanks in advance for your help.", "I'd appreciate a quick reply.",
    "Not happy about this at all.", "Any help is appreciated.",
    "Thank you for your time.", "Looking forward to hearing from you.",
]
_SIGNOFFS = [
    "Thanks,", "Thank you,", "Best regards,", "Cheers,", "Regards,", "Kind regards,",
    "Many thanks,", "Best,",
]
_NAMES = [
    "Anna", "Mark T.", "Priya", "J. Chen", "Carlos", "Sam", "Olivia", "Tomás", "Fatima",
    "Ben", "Yuki", "Grace O.", "",
]
_SLOTS = {
    "amount": ["$12.99", "$49", "€30", "£18.50", "$129.00", "$7.99", "€64.90", "$19"],
    "plan": ["Premium plan", "Family plan", "Pro subscription", "annual membership",
             "Basic plan", "Business plan"],
    "product": ["the Aero X2 headphones", "my Nimbus smart speaker", "the PixelPad tablet",
                "the Trailblazer backpack", "the Lumen desk lamp", "the Orbit smartwatch",
                "the Vela coffee grinder", "the Kestrel bike light", "the Haven air purifier"],
    "day": ["yesterday", "last Monday", "two days ago", "this morning", "last week",
            "on Friday", "a month ago", "on the 3rd"],
    "date": ["March 3", "the 14th", "June 28", "10/02", "last Tuesday", "May 1st"],
    "device": ["iPhone 13", "Pixel 7", "Galaxy S22", "iPad", "Windows laptop", "MacBook",
               "Chromebook", "OnePlus phone"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge"],
    "carrier": ["UPS", "FedEx", "DHL", "USPS", "the courier", "Royal Mail"],
    "user": ["jdoe88", "maria.k", "techguy42", "s.patel", "lena_w", "mike.r"],
    "version": ["4.2.1", "5.0", "3.9.7", "5.1.2"],
    # Numbers too varied to list, drawn for each ticket.
    "order": lambda rng: f"#{int(rng.integers(10000, 999999))}",
    "number": lambda rng: str(int(rng.integers(100000, 999999))),
    "digits": lambda rng: f"{int(rng.integers(0, 10000)):04d}",
    "count": ["two", "three", "five", "several", "4", "10"],
}


def _ticket(label, split, rng):
    """One ticket of class `label`, built only from the phrases `split` may use."""
    families = [split_pool(family, split) for family in _CORE[label]]
    family = int(rng.integers(len(families)))
    core = pick(rng, families[family])
    if not core.endswith("?") and not core.startswith(_NO_LEAD) and rng.random() < 0.3:
        core = pick(rng, _LEADS).replace("{core}", core)
    core = fill(core, rng, _SLOTS)
    parts = []
    if rng.random() < 0.5:
        parts.append(fill(pick(rng, _CONTEXT), rng, _SLOTS))
    parts.append(sentence(core))
    if rng.random() < 0.25:
        other = (family + 1 + int(rng.integers(len(families) - 1))) % len(families)
        parts.append(sentence(fill(pick(rng, families[other]), rng, _SLOTS)))
    if rng.random() < 0.45:
        parts.append(fill(pick(rng, split_pool(_DETAIL[label], split)), rng, _SLOTS))
    if rng.random() < 0.3:
        parts.append(fill(pick(rng, _CONTEXT), rng, _SLOTS))
    if rng.random() < 0.7:
        parts.append(pick(rng, split_pool(_ASK[label], split)))
    if rng.random() < 0.35:
        parts.append(pick(rng, _CLOSINGS))
    # Email layout: the greeting, the body and the sign-off on lines of their own.
    lines = [pick(rng, _GREETINGS), " ".join(parts)]
    if rng.random() < 0.6:
        lines.extend([pick(rng, _SIGNOFFS), pick(rng, _NAMES)])
    text = "\n".join(line for line in lines if line)

    noise = rng.random()
    if noise < 0.12:
        text = text.lower()
    elif noise < 0.17:
        text = text.upper()
    if rng.random() < 0.3:
        text = add_typos(text, rng, 1 + int(rng.integers(2)))
    return text


def support_ticket_splits(per_class_train=16, per_class_test=100, seed=0):
    """Generate training and test support tickets in memory.

    Training tickets use the training and shared phrase pools, test tickets the test and
    shared pools, so a test ticket usually states its problem in words no training ticket
    uses. Both splits are shuffled; the same arguments always give the same tickets.

    Args:
        per_class_train: training tickets per class.
        per_class_test: test tickets per class.
        seed: integer seed.

    Returns:
        `(train_texts, train_labels, test_texts, test_labels, class_names)`: lists of
        strings, int32 numpy arrays of indices into `class_names`, and
        `list(SUPPORT_TICKET_CLASSES)`.

    Example:
        >>> x, y, test_x, test_y, names = support_ticket_splits(16, 50, seed=0)
        >>> len(x), len(test_x), names[y[0]] in names
        (96, 300, True)
    """
    per_class_train = check_int("per_class_train", per_class_train, 1)
    per_class_test = check_int("per_class_test", per_class_test, 1)
    seed = check_int("seed", seed, 0)
    # No stream: the tickets keep the random numbers of the published benchmarks.
    splits = class_splits(
        _ticket, SUPPORT_TICKET_CLASSES, per_class_train, per_class_test, seed, stream=None
    )
    return (*splits, list(SUPPORT_TICKET_CLASSES))


def make_support_tickets(directory=None, per_class=16, seed=0, test_per_class=100):
    """Write the support tickets as CSV files and return their folder.

    `tickets.csv` holds `per_class` training tickets per class and `tickets_test.csv`
    `test_per_class` test tickets per class, both with a `text,label` header, so that
    `text_datasets(csv=..., validation_path=...)` reads them directly. Each file is
    written to a temporary name and renamed into place; a `.complete` marker written last
    records the parameters, and a second call with the same ones returns without writing.

    Args:
        directory: folder for the files; created if needed. None uses
            `tfft-support-tickets` in the system's temporary folder.
        per_class: training tickets per class; the default suits few-shot fine-tuning.
        seed: integer seed.
        test_per_class: test tickets per class.

    Returns:
        The folder, as a string.

    Raises:
        DataError: for bad arguments, when `directory` is a file, or when it holds a
            `tickets.csv` or `tickets_test.csv` that this function did not write (it is
            never overwritten).

    Example:
        >>> folder = make_support_tickets("/tmp/tickets", per_class=16)
        >>> data = text_datasets(csv=os.path.join(folder, "tickets.csv"),
        ...                      validation_path=os.path.join(folder, "tickets_test.csv"))
        >>> data.num_train
        96
    """
    per_class = check_int("per_class", per_class, 1)
    test_per_class = check_int("test_per_class", test_per_class, 1)
    seed = check_int("seed", seed, 0)
    if directory is None:
        directory = os.path.join(tempfile.gettempdir(), "tfft-support-tickets")
    directory = os.fspath(directory)
    generated.check_not_file(directory, "the tickets")
    params = dict(
        classes=list(SUPPORT_TICKET_CLASSES),
        per_class=per_class,
        test_per_class=test_per_class,
        seed=seed,
        version=_VERSION,
    )
    if generated.is_current(directory, params):
        return directory
    marker = os.path.join(directory, generated.MARKER)

    # Unlike the other sets (`paraphrases.write_splits`), the tickets are written file by
    # file into the folder, not as a whole new folder: a folder that also holds other
    # files has always been accepted, and replacing it whole would delete them.
    existing = [
        name
        for name in (TICKETS_CSV, TICKETS_TEST_CSV)
        if os.path.exists(os.path.join(directory, name))
    ]
    if existing and not os.path.exists(marker):
        raise DataError(
            f"{directory} already holds {existing[0]}, which this function did not write; "
            f"pass another folder. Received: directory='{directory}'"
        )
    os.makedirs(directory, exist_ok=True)
    # While the CSVs are replaced, the marker matches no parameters.
    generated.replace_file(marker, lambda f: json.dump({"writing": True}, f))
    train_texts, train_labels, test_texts, test_labels, names = support_ticket_splits(
        per_class, test_per_class, seed
    )
    generated.replace_file(os.path.join(directory, TICKETS_CSV),
                           lambda f: write_csv(f, train_texts, train_labels, names))
    generated.replace_file(os.path.join(directory, TICKETS_TEST_CSV),
                           lambda f: write_csv(f, test_texts, test_labels, names))
    generated.replace_file(marker, lambda f: json.dump(params, f))
    return directory
