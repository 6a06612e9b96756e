"""The phrase pools of the contract-clause set (`contract_clauses.py` assembles them).

`CORE[label]` holds the families of paraphrases of one aspect of a clause type, and
`HEADINGS[label]` the section headings of that type; the generator splits every family
and heading pool between training and test (`paraphrases.split_pool`: items 0 and 3
train, 1 and 4 test, 2 both). The other pools are shared by every class and both splits.
`{a}` and `{b}` are the two parties of a clause; the other slots are filled from `SLOTS`.
"""

# Operative sentences: per class, families of paraphrases of one aspect of the clause.
# {a} and {b} are the parties (e.g. the Supplier and the Customer), in every clause.
CORE = {
    "termination": [
        ["either party may terminate this Agreement for any reason upon {days} prior written notice to the other "
         "party",
         "this Agreement may be ended by either party at any time, without cause, by giving the other not less than "
         "{days} notice in writing",
         "{b} may terminate this Agreement for convenience on {days} written notice to {a}",
         "either party may bring this Agreement to an end without stating a reason by serving {days} written notice "
         "on the other",
         "{b} shall have the right to cancel this Agreement at its discretion, effective {days} after it notifies "
         "{a} in writing"],
        ["either party may terminate this Agreement immediately by written notice if the other party commits a "
         "material breach and fails to cure it within {days} after receiving notice of the breach",
         "should a party materially default on its obligations and not remedy the default within {days} of being "
         "asked to do so, the other party may end this Agreement with immediate effect",
         "if {a} materially breaches this Agreement and does not cure the breach within {days} of written notice, "
         "{b} may terminate this Agreement",
         "a party may terminate this Agreement upon written notice where the other party is in material breach and "
         "that breach remains uncured {days} after notice",
         "{b} may rescind this Agreement forthwith if {a} fails to perform a material obligation and the failure "
         "continues unremedied for {days} following written demand"],
        ["either party may terminate this Agreement with immediate effect if the other party becomes insolvent, "
         "makes an assignment for the benefit of creditors or has a receiver appointed over its assets",
         "this Agreement may be ended at once by notice if the other party goes into liquidation, enters "
         "administration or ceases to carry on its business",
         "either party may terminate this Agreement immediately if the other party files a petition in bankruptcy "
         "that is not dismissed within {days}",
         "a party may terminate this Agreement by notice if the other party is unable to pay its debts as they fall "
         "due or enters into any arrangement with its creditors",
         "{b} may end this Agreement without further notice should {a} be wound up, dissolved or placed under the "
         "control of an administrator"],
        ["upon termination or expiry of this Agreement, {b} shall pay {a} all fees accrued up to the effective date "
         "of termination",
         "once this Agreement has come to an end, {b} will settle every amount owed for work done before that date",
         "upon termination of this Agreement for any reason, each party shall promptly return or destroy the other "
         "party's Confidential Information",
         "on expiry or termination, all licences granted under this Agreement shall immediately cease and {b} shall "
         "stop using the Software",
         "when this Agreement ends, the rights granted to {b} lapse at once and {b} must discontinue all use of the "
         "Services"],
        ["this Agreement shall commence on the Effective Date and remain in force for an initial term of {years}, "
         "unless terminated earlier as provided herein",
         "the Agreement takes effect on signature and lasts {years}, after which it expires unless the parties "
         "extend it in writing",
         "this Agreement shall renew automatically for successive one-year terms unless either party gives notice of "
         "non-renewal at least {days} before the end of the then-current term",
         "the term of this Agreement begins on the Effective Date and ends {years} later, subject to earlier "
         "termination under this Section",
         "unless one of the parties objects in writing no later than {days} before expiry, the contract is extended "
         "for a further twelve months each year"],
        ["{a} may terminate this Agreement upon written notice if {b} undergoes a change of control or sells all or "
         "substantially all of its assets",
         "if ownership of {b} passes to a competitor of {a}, {a} is entitled to end this Agreement with immediate "
         "effect",
         "either party may terminate this Agreement by notice if the other party merges with or is acquired by a "
         "third party",
         "{a} shall have the right to terminate this Agreement if control of {b} is transferred to any person "
         "without {a}'s prior written consent",
         "should {b} be taken over, whether by merger, share sale or otherwise, {a} may cancel this Agreement by "
         "giving written notice within {days} of learning of it"],
    ],
    "confidentiality": [
        ["{b} shall keep confidential all Confidential Information disclosed by {a} and shall not disclose it to any "
         "third party without {a}'s prior written consent",
         "the receiving party undertakes to treat as secret any proprietary information it obtains from the "
         "disclosing party and not to reveal it to anyone else unless the disclosing party agrees in writing",
         "each party shall hold the other party's Confidential Information in strict confidence and shall not "
         "disclose it except as permitted by this Agreement",
         "the Recipient shall not, without the prior written approval of the Discloser, divulge any Confidential "
         "Information to any person",
         "neither party may pass on to outsiders any non-public business or technical information received from the "
         "other, save with the other's express written permission"],
        ["the receiving party shall use the Confidential Information solely for the purpose of performing its "
         "obligations under this Agreement",
         "information received from the other party may be used only for the Purpose and for no other end",
         "{b} shall not use any Confidential Information of {a} for its own benefit or for the benefit of any third "
         "party",
         "the Recipient shall not exploit the Confidential Information for any purpose other than evaluating the "
         "Proposed Transaction",
         "neither party shall make use of the other's trade secrets except to the extent needed to carry out the "
         "work described in this Agreement"],
        ["Confidential Information does not include information that is or becomes publicly available through no "
         "fault of the receiving party",
         "these obligations do not extend to material that was already in the recipient's lawful possession before "
         "disclosure or that it develops independently",
         "the obligations in this Section shall not apply to information that the receiving party can show was "
         "lawfully received from a third party without restriction",
         "information already known to the receiving party at the time of disclosure, as shown by its written "
         "records, is not Confidential Information",
         "nothing here restricts the use of knowledge that enters the public domain other than through a breach by "
         "the recipient"],
        ["if the receiving party is required by law or court order to disclose Confidential Information, it shall "
         "give the disclosing party prompt notice so that it may seek a protective order",
         "where a regulator or a court compels the recipient to reveal protected information, the recipient must "
         "first inform the owner, where lawful, and reveal no more than is legally required",
         "a party may disclose Confidential Information to the extent required by applicable law, provided that it "
         "notifies the other party in advance",
         "disclosure required by a subpoena or by the rules of any stock exchange shall not breach this Section, "
         "provided the disclosing party is given prompt written notice",
         "should any authority demand that secret information be handed over, the party concerned must tell the "
         "other party without delay and help it resist or limit the demand"],
        ["the obligations of confidentiality in this Section shall survive termination of this Agreement for a "
         "period of {years}",
         "the duty to keep the other party's information secret continues for {years} after this Agreement ends",
         "on request, the receiving party shall return or destroy all documents containing Confidential Information "
         "and certify in writing that it has done so",
         "the receiving party shall, at the disclosing party's election, return or securely delete all copies of "
         "Confidential Information within {days} of a written request",
         "all papers and files holding the other party's proprietary data must be handed back or erased when asked, "
         "and an officer must confirm the erasure in writing"],
        ["the receiving party may disclose Confidential Information only to those of its employees and professional "
         "advisers who need to know it and are bound by duties of confidentiality no less protective than these",
         "access to the other party's sensitive information shall be limited to staff and advisers who require it "
         "for the project and have signed non-disclosure undertakings",
         "{b} shall ensure that its employees, contractors and agents comply with the confidentiality obligations in "
         "this Agreement",
         "each party shall restrict disclosure of the other party's Confidential Information to its officers and "
         "employees on a need-to-know basis",
         "{b} answers for any leak of protected material by its personnel and subcontractors as if the leak were its "
         "own"],
    ],
    "governing_law": [
        ["this Agreement shall be governed by and construed in accordance with the laws of {law}",
         "the law of {law} applies to this contract and to its interpretation",
         "this Agreement and any dispute arising out of or in connection with it shall be governed by the laws of "
         "{law}, without regard to its conflict of laws principles",
         "the validity, construction and performance of this Agreement shall be governed by the laws of {law}",
         "all questions about the meaning or enforceability of these terms are to be answered under the law in force "
         "in {law}"],
        ["each party irrevocably submits to the exclusive jurisdiction of the courts of {venue} to settle any "
         "dispute arising out of or in connection with this Agreement",
         "any lawsuit relating to this contract may be brought only before the courts located in {venue}, and the "
         "parties consent to their jurisdiction",
         "the courts of {venue} shall have exclusive jurisdiction over any claim arising under this Agreement",
         "the parties agree that any legal action or proceeding arising under this Agreement shall be brought "
         "exclusively in the courts of {venue}",
         "disputes under these terms belong solely before the tribunals sitting in {venue}, and neither party will "
         "object to that forum"],
        ["any dispute arising out of or in connection with this Agreement shall be finally resolved by arbitration "
         "under the Rules of {rules} by a sole arbitrator seated in {city}",
         "controversies between the parties will be decided by binding arbitration administered by {rules}, with "
         "hearings held in {city}",
         "all disputes shall be referred to and finally settled by arbitration in {city} in accordance with the "
         "rules of {rules}",
         "any claim relating to this Agreement shall be submitted to confidential arbitration in {city} before a "
         "single arbitrator appointed under the rules of {rules}",
         "instead of going to court, the parties will put any disagreement before an arbitral tribunal in {city}, "
         "whose award is final and may be entered in any court"],
        ["the United Nations Convention on Contracts for the International Sale of Goods shall not apply to this "
         "Agreement",
         "the parties exclude the application of the Vienna Sales Convention to this contract",
         "the application of the UN Convention on Contracts for the International Sale of Goods is expressly "
         "excluded",
         "this Agreement shall be interpreted without giving effect to any choice of law rules that would require "
         "the application of the laws of another jurisdiction",
         "no conflict-of-laws principle shall cause the law of any other country to govern these terms"],
        ["the parties shall attempt in good faith to resolve any dispute through negotiation between senior "
         "executives before commencing proceedings in the courts of {venue}",
         "before either side sues, disagreements are first escalated to the parties' managing directors, who will "
         "meet within {days} to try to settle them",
         "any dispute shall first be referred to mediation in {city}, and if it is not resolved within {days}, "
         "either party may bring proceedings in the courts of {venue}",
         "no party may start litigation until it has given the other party written notice of the dispute and the "
         "parties have tried to resolve it amicably for {days}",
         "the parties will seek an amicable settlement through a mediator before taking any claim to a judge"],
    ],
    "indemnification": [
        ["{a} shall indemnify, defend and hold harmless {b} and its officers, directors and employees from and "
         "against any and all claims, losses, damages, liabilities, costs and expenses arising out of {a}'s breach "
         "of this Agreement",
         "{a} agrees to compensate {b} in full for every loss, cost or expense it suffers as a result of {a} failing "
         "to perform this contract",
         "{a} will defend {b} against any third-party claim arising from {a}'s negligence or wilful misconduct and "
         "pay any damages finally awarded",
         "{a} shall indemnify {b} against all losses and expenses, including reasonable attorneys' fees, that {b} "
         "incurs because of {a}'s negligent acts or omissions",
         "{b} will be kept whole by {a} for any judgment, settlement or legal cost it bears owing to careless or "
         "deliberate wrongdoing by {a}'s staff"],
        ["{a} shall defend {b} against any claim that the Software infringes a third party's patent, copyright or "
         "trade secret and shall pay all damages and costs finally awarded",
         "if anyone alleges that the deliverables violate their intellectual property, {a} will take over the "
         "defence at its own expense and cover any resulting award or settlement",
         "{a} shall indemnify {b} from any third-party claim alleging that the Services infringe any intellectual "
         "property right",
         "{a} will hold {b} harmless against claims that the use of the Products as permitted by this Agreement "
         "infringes any patent or copyright",
         "should a third party claim that {b}'s permitted use of the licensed materials breaches its rights, {a} "
         "bears the cost of answering that claim and of any amount {b} is ordered to pay"],
        ["the indemnified party shall give the indemnifying party prompt written notice of any claim and shall allow "
         "it sole control of the defence and settlement of the claim",
         "a party seeking to be indemnified must tell the other party about the claim without delay, let it run the "
         "defence and give it reasonable assistance at its expense",
         "the indemnifying party shall not settle any claim in a manner that admits fault on behalf of the "
         "indemnified party without its prior written consent",
         "as a condition of indemnification, the indemnified party shall notify the indemnifying party of the claim "
         "promptly and cooperate fully in its defence",
         "no settlement that imposes an obligation on the protected party may be agreed by the party giving the "
         "indemnity unless the protected party approves it in writing"],
        ["each party shall indemnify the other against any fine or penalty imposed by a regulator as a result of its "
         "breach of applicable data protection laws",
         "the parties will reimburse one another for any sanction a supervisory authority levies because of their "
         "own failure to handle personal data lawfully",
         "{a} shall indemnify {b} for all costs of notifying affected individuals arising from a security breach "
         "caused by {a}",
         "each party shall indemnify the other from claims for bodily injury, death or damage to tangible property "
         "caused by its negligence",
         "whichever party's fault causes personal injury or damage to physical property shall bear and make good the "
         "other's resulting losses"],
        ["{a} shall have no obligation to indemnify {b} for any claim arising from modifications to the Software "
         "made by anyone other than {a}",
         "the duty to defend does not cover claims that would not have arisen but for {b} combining the product with "
         "equipment {a} did not supply",
         "the indemnity in this Section does not apply to the extent a claim results from {b}'s own negligence or "
         "breach",
         "{a}'s indemnification obligations shall not apply to claims caused by {b}'s use of the Services in "
         "violation of this Agreement",
         "no protection against third-party suits is owed where the loss flows from the customer's own misuse of the "
         "deliverables"],
    ],
    "limitation_of_liability": [
        ["{a}'s total liability arising out of or in connection with this Agreement shall not exceed the fees paid "
         "by {b} in the {months} preceding the event giving rise to the claim",
         "however a claim arises, the most {a} will have to pay {b} in aggregate is an amount equal to the charges "
         "paid during the previous {months}",
         "in no event shall either party's aggregate liability under this Agreement exceed {amount}",
         "the maximum aggregate liability of each party for all claims under this Agreement shall be limited to "
         "{amount}",
         "whatever the cause of action, neither side's financial exposure to the other can go beyond {amount} in "
         "total"],
        ["in no event shall either party be liable for any indirect, incidental, special or consequential damages, "
         "including loss of profits, even if advised of the possibility of such damages",
         "neither party will be responsible to the other for lost revenue, lost business or any loss that is not a "
         "direct and foreseeable result of its conduct",
         "neither party shall be liable for any loss of profits, loss of data or loss of goodwill, whether arising "
         "in contract, tort or otherwise",
         "{a} shall not be liable to {b} for any consequential, exemplary or punitive damages arising out of this "
         "Agreement",
         "no recovery is available from {a} for knock-on harm such as business interruption, missed savings or the "
         "cost of substitute goods"],
        ["nothing in this Agreement limits or excludes either party's liability for death or personal injury caused "
         "by its negligence, or for fraud or fraudulent misrepresentation",
         "the limits above do not protect a party that acted fraudulently or whose carelessness caused someone's "
         "death or bodily harm",
         "the limitations in this Section shall not apply to a party's indemnification obligations or to its breach "
         "of Section {section} (Confidentiality)",
         "the foregoing exclusions do not apply to liability that cannot be limited or excluded under applicable law",
         "the caps in this clause are lifted for claims founded on a party's gross negligence, wilful misconduct or "
         "misuse of the other's secret information"],
        ["{b}'s sole and exclusive remedy for any failure of the Services shall be the service credits set out in "
         "Schedule {section}",
         "the credits described in the service level terms are the only compensation {b} can claim for downtime",
         "re-performance of the defective Services or, if that fails, a refund of the fees paid for them shall be "
         "{b}'s exclusive remedy",
         "{b}'s only remedy for a breach of the warranty above is the repair or replacement of the non-conforming "
         "Products",
         "if the deliverables are faulty, having them fixed or swapped is all {b} is entitled to, and no other "
         "damages may be sought"],
        ["no action arising out of this Agreement may be brought by either party more than {years} after the cause "
         "of action has accrued",
         "any claim against {a} must be started within {years} of the events it concerns, after which it is barred",
         "{b} must notify {a} of any claim within {days} of becoming aware of it, failing which {a} shall have no "
         "liability for it",
         "either party shall be barred from bringing any claim under this Agreement unless legal proceedings are "
         "commenced within {years} of the date of the breach",
         "claims not raised in writing within {days} of discovery are waived and cannot give rise to any "
         "compensation"],
        ["the parties agree that the limitations of liability in this Agreement reflect a reasonable allocation of "
         "risk and that the fees would be higher without them",
         "each side accepts that the prices charged were set on the basis that exposure to damages would be "
         "restricted as described here",
         "each party acknowledges that the exclusions and limitations in this Section are an essential basis of the "
         "bargain between the parties",
         "the limitations of liability set out in this Section shall apply even if any limited remedy fails of its "
         "essential purpose",
         "these restrictions on recoverable losses keep operating even where the agreed remedy turns out to be "
         "inadequate"],
    ],
    "payment_terms": [
        ["{a} shall invoice {b} monthly in arrears and {b} shall pay each undisputed invoice within {days} of the "
         "invoice date",
         "bills will be issued at the end of every month and are due for settlement {days} after receipt",
         "all invoices are payable in full within {days} from the date of invoice",
         "{b} shall pay the Fees set out in the Order Form within {days} of receipt of a valid invoice",
         "amounts charged by {a} must reach its bank account no later than {days} after {b} receives the "
         "corresponding statement"],
        ["any amount not paid when due shall bear interest at the rate of {rate} per month, or the maximum rate "
         "permitted by law if lower",
         "overdue sums accrue a late charge of {rate} each month until they are settled in full",
         "late payments shall accrue interest at {rate} per month from the due date until the date of actual payment",
         "{a} may charge interest on any overdue invoice at {rate} per month, calculated daily and compounded "
         "monthly",
         "if {b} pays late, {a} is entitled to add a finance charge of {rate} a month to the outstanding balance"],
        ["if any undisputed amount remains unpaid for more than {days} after its due date, {a} may suspend the "
         "Services until payment is received in full",
         "failure to settle an invoice within {days} of the due date entitles {a} to stop providing the Services "
         "until the arrears are cleared",
         "{a} may suspend the Services, or terminate this Agreement, if {b} fails to pay any amount within {days} of "
         "written notice that it is overdue",
         "{a} reserves the right to withhold delivery of further Products while any invoice remains overdue",
         "no further shipments will be released to a buyer whose account is in arrears"],
        ["all fees are exclusive of value added tax, sales tax and any other applicable taxes, which {b} shall pay "
         "in addition",
         "prices quoted do not include VAT or similar duties; these will be added to each invoice at the applicable "
         "rate",
         "{b} shall pay all taxes, duties and levies imposed on the Fees, other than taxes on {a}'s net income",
         "if {b} is required by law to withhold any tax from a payment, it shall gross up the payment so that {a} "
         "receives the full amount",
         "where a deduction for tax is compulsory, the payer must increase the sum paid so that the payee ends up "
         "with what it would have received without the deduction"],
        ["{b} shall pay {a} a fee of {amount} per month for the Services, payable in advance on the first day of "
         "each month",
         "the price for the services is {amount} a month, to be paid before the start of each monthly period",
         "all payments under this Agreement shall be made in {currency} by bank transfer to the account designated "
         "by {a}",
         "{b} shall pay the Fees in {currency} by wire transfer without any set-off or deduction",
         "remittances must be sent electronically in {currency}, with no amount held back for counterclaims"],
        ["if {b} disputes any part of an invoice in good faith, it shall notify {a} within {days} and pay the "
         "undisputed portion by the due date",
         "where a customer questions a charge, it must say so within {days} and still settle the remainder of the "
         "bill on time",
         "{a} may increase the Fees once per year by no more than {rate} on {days} prior written notice",
         "{a} may adjust its prices annually in line with the consumer price index, provided it gives {b} at least "
         "{days} notice",
         "rates may rise on each anniversary of the start date, but never by more than {rate}, and only after {b} "
         "has been warned {days} ahead"],
    ],
    "force_majeure": [
        ["neither party shall be liable for any failure or delay in performing its obligations to the extent caused "
         "by events beyond its reasonable control, including fire, flood, earthquake, war, terrorism or epidemic",
         "a party is excused from performing while it is prevented from doing so by circumstances outside its "
         "control, such as natural disasters, riots, strikes or government action",
         "neither party shall be in breach of this Agreement if its performance is prevented or delayed by a Force "
         "Majeure Event",
         "a party shall not be responsible for any delay or non-performance caused by acts of God, pandemics, acts "
         "of government, labour disputes or failures of public utilities",
         "no party answers for a shortfall in performance that results from a catastrophe it could not reasonably "
         "have foreseen or prevented"],
        ["the affected party shall promptly notify the other party of the Force Majeure Event and use all reasonable "
         "efforts to mitigate its effects",
         "a party relying on an event outside its control must inform the other side without delay, describe the "
         "event and do what it reasonably can to limit the disruption",
         "the party claiming relief under this Section shall give written notice within {days} of the start of the "
         "event, stating its expected duration",
         "the affected party shall keep the other party informed of the progress of the event and resume performance "
         "as soon as reasonably possible",
         "whoever is hit by such an occurrence has to report it quickly and get back to normal service the moment "
         "circumstances allow"],
        ["if a Force Majeure Event continues for more than {days}, either party may terminate this Agreement by "
         "written notice to the other",
         "should the disruption last longer than {days}, each party is entitled to bring the contract to an end by "
         "notifying the other in writing",
         "where performance is suspended for a continuous period of {days} because of a Force Majeure Event, the "
         "unaffected party may terminate this Agreement",
         "either party may cancel any affected order if an event beyond the control of the parties prevents delivery "
         "for more than {days}",
         "if circumstances outside both parties' control persist beyond {days}, the contract may be ended without "
         "liability on either side"],
        ["a Force Majeure Event shall not excuse {b}'s obligation to pay any amount that has fallen due under this "
         "Agreement",
         "events outside a party's control never relieve the customer of paying sums already owed",
         "the obligation to make payments when due shall not be suspended by a Force Majeure Event",
         "nothing in this Section relieves {b} of its payment obligations for Services already performed",
         "even during such an occurrence, invoices that have become payable must still be settled on time"],
        ["the time for performance of the affected obligations shall be extended by a period equal to the duration "
         "of the Force Majeure Event",
         "deadlines for the obligations concerned are pushed back for as long as the unforeseeable disruption lasts",
         "the affected party's performance shall be suspended for as long as the event beyond its control continues",
         "any delivery dates shall be postponed by the period during which {a} is prevented from performing by a "
         "cause beyond its reasonable control",
         "schedules move out day for day while a natural disaster or a government order keeps a party from working"],
        ["a Force Majeure Event does not include the financial inability of a party to perform or changes in market "
         "conditions",
         "a lack of funds or an unfavourable shift in prices will not count as an extraordinary event that excuses "
         "performance",
         "strikes or labour disputes involving the affected party's own workforce shall not constitute a Force "
         "Majeure Event",
         "a shortage of materials shall only qualify as an event beyond a party's control if it affects the whole "
         "industry",
         "industrial action by a party's own employees gives that party no right to be excused from performing"],
    ],
    "assignment": [
        ["neither party may assign or transfer any of its rights or obligations under this Agreement without the "
         "prior written consent of the other party, such consent not to be unreasonably withheld",
         "this contract cannot be handed over to someone else by either side unless the other side first agrees in "
         "writing",
         "{b} shall not assign this Agreement, in whole or in part, without {a}'s prior written consent",
         "neither party shall transfer, delegate or novate this Agreement or any right under it without first "
         "obtaining the written approval of the other",
         "{b} may not pass its position under these terms to any other person without {a}'s written agreement"],
        ["either party may assign this Agreement without consent to an affiliate or to a successor in connection "
         "with a merger, acquisition or sale of all or substantially all of its assets",
         "a party may, without asking permission, transfer the contract to a group company or to whoever buys its "
         "business",
         "notwithstanding the foregoing, {a} may assign this Agreement to any entity that acquires all or "
         "substantially all of its business",
         "consent shall not be required for an assignment to an affiliate of the assigning party, provided that the "
         "assignee agrees in writing to be bound by this Agreement",
         "moving this contract to another company as part of a corporate reorganisation, takeover or merger does not "
         "need the other side's approval"],
        ["any purported assignment in violation of this Section shall be null and void",
         "an attempt to transfer the Agreement contrary to these terms has no effect",
         "any attempted assignment or delegation without the required consent shall be void and of no effect",
         "any transfer made in breach of this Section shall be invalid and shall not bind the other party",
         "a handover of rights that ignores this restriction is ineffective"],
        ["{a} may subcontract any of its obligations under this Agreement, but shall remain responsible for the acts "
         "and omissions of its subcontractors",
         "{a} may engage third parties to carry out parts of the work, provided that it stays accountable to {b} for "
         "their performance",
         "{a} shall not subcontract any part of the Services without {b}'s prior written consent",
         "{a} may delegate the performance of the Services to its subcontractors, remaining fully liable for their "
         "performance",
         "outsourcing any portion of the work requires {b}'s written permission in advance"],
        ["this Agreement shall be binding upon and inure to the benefit of the parties and their respective "
         "successors and permitted assigns",
         "these terms bind and benefit the parties and anyone who lawfully takes over their rights",
         "subject to this Section, this Agreement binds the parties' successors and permitted assignees",
         "the rights and obligations of the parties shall pass to and bind their respective successors in title and "
         "permitted transferees",
         "whoever lawfully steps into a party's shoes under this contract takes both its benefits and its burdens"],
        ["{a} may assign its right to receive payment under this Agreement to a bank or other financing institution "
         "without {b}'s consent",
         "{a} is free to sell its invoices and the sums owed to it under this contract to a factoring company",
         "{a} may assign or charge its rights under this Agreement by way of security to any lender",
         "{a} may transfer the benefit of amounts payable to it under this Agreement to a financier upon written "
         "notice to {b}",
         "nothing prevents {a} from pledging the money due to it under these terms as collateral for a loan"],
    ],
}

# Section headings, per class; split like the sentences.
HEADINGS = {
    "termination": ["Term and Termination", "Termination Rights", "Termination", "Duration and Termination",
                    "Ending this Agreement"],
    "confidentiality": ["Confidentiality", "Non-Disclosure", "Confidential Information", "Confidentiality "
    "Obligations",
                        "Protection of Information"],
    "governing_law": ["Governing Law and Jurisdiction", "Applicable Law", "Governing Law", "Disputes",
                      "Choice of Law; Venue"],
    "indemnification": ["Indemnification", "Indemnities", "Indemnity", "Indemnification by Supplier",
                        "Defence of Claims"],
    "limitation_of_liability": ["Limitation of Liability", "Liability Cap", "Limitations", "Exclusion of Damages",
                                "Limits on Liability"],
    "payment_terms": ["Fees and Payment", "Invoicing", "Payment", "Payment Terms", "Charges"],
    "force_majeure": ["Force Majeure", "Events Beyond Control", "Force Majeure Events", "Excused Performance",
                      "Unforeseeable Events"],
    "assignment": ["Assignment", "Transfer of Rights", "Assignment and Subcontracting", "Successors and Assigns",
                   "No Transfer"],
}
# Titles that other sections' cross-references use: every type's words then occur in the
# others' clauses, as they do in real contracts.
TITLES = {
    "termination": "Termination", "confidentiality": "Confidentiality", "governing_law": "Governing Law",
    "indemnification": "Indemnification", "limitation_of_liability": "Limitation of Liability",
    "payment_terms": "Fees and Payment", "force_majeure": "Force Majeure", "assignment": "Assignment",
}
CROSS_REFERENCES = [
    "This Section is subject to Section {section} ({title}).",
    "Nothing in this Section limits Section {section} ({title}).",
    "This Section shall be read together with Section {section} ({title}).",
    "In the event of a conflict between this Section and Section {section} ({title}), this Section prevails.",
    "Except as set out in Section {section} ({title}), this Section applies in full.",
]
# Boilerplate of any type and both splits: it carries no class.
BOILERPLATE = [
    "This Section shall survive any termination or expiry of this Agreement.",
    "In this Section, \"including\" means \"including without limitation\".",
    "Notices under this Section shall be given in accordance with Section {section} (Notices).",
    "Each party shall bear its own costs of complying with this Section.",
    "Capitalised terms in this Section have the meanings given in Schedule 1.",
    "The parties have negotiated this Section at arm's length.",
]
PARTIES = [
    ("the Supplier", "the Customer"), ("the Licensor", "the Licensee"), ("the Consultant", "the Company"),
    ("the Provider", "the Client"), ("the Seller", "the Buyer"), ("the Contractor", "the Employer"),
    ("Vendor", "Purchaser"), ("the Service Provider", "the Customer"),
]
# Governing law, the courts and the seat of arbitration of one clause agree.
JURISDICTIONS = [
    ("the State of New York", "New York County, New York", "New York"),
    ("the State of Delaware", "Wilmington, Delaware", "Wilmington"),
    ("England and Wales", "England and Wales", "London"),
    ("the State of California", "San Francisco County, California", "San Francisco"),
    ("the Province of Ontario", "Toronto, Ontario", "Toronto"),
    ("Singapore", "Singapore", "Singapore"),
    ("Ireland", "Dublin, Ireland", "Dublin"),
    ("Switzerland", "the Canton of Zurich", "Zurich"),
    ("New South Wales", "New South Wales", "Sydney"),
]
SLOTS = {
    "days": ["thirty (30) days", "sixty (60) days", "fourteen (14) days", "ninety (90) days", "30 days",
             "45 days", "ten (10) Business Days", "15 business days"],
    "years": ["one (1) year", "two (2) years", "three (3) years", "five (5) years", "12 months", "24 months"],
    "months": ["twelve (12) months", "six (6) months", "12 months", "three months"],
    "amount": ["US$1,000,000", "$250,000", "EUR 500,000", "GBP 2,000,000", "the total fees paid under this Agreement",
               "two times the annual fees"],
    "rate": ["1.5%", "1%", "2%", "one and a half percent (1.5%)", "0.5%"],
    "rules": ["the International Chamber of Commerce", "the London Court of International Arbitration",
              "the American Arbitration Association", "the Singapore International Arbitration Centre", "JAMS"],
    "section": ["7", "9.2", "11", "12.4", "14", "8.3", "15", "10.1"],
    "currency": ["US dollars", "euros", "pounds sterling", "Swiss francs", "Canadian dollars"],
}
