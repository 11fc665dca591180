"""The word lists the corpus is written from: civic terms and phrases, names, places, and the seeded generator.

This module is data, and long for that reason; the code that uses it is in ``vocabulary``, ``planning`` and
``text``.
"""

from __future__ import annotations

import random

# The top of any English text: these take the first ranks of the Zipf distribution.
FUNCTION_WORDS = (
    "the of and to a in for is on that by with be as at this was from or are an it will not which has have "
    "all been were would any their there its shall may other such into no these more if also per upon said "
    "each under than be should who one two three new following within after before during about between"
).split()

CIVIC_WORDS = (
    "council zoning variance ordinance cannabis dispensary liquor license budget hearing motion seconded "
    "approved approve resolution commission board mayor clerk agenda minutes public comment comments item "
    "items amendment appeal permit parcel property district street avenue sidewalk water sewer stormwater "
    "utility infrastructure contract bid award grant fund fiscal revenue expenditure tax assessment levy "
    "bond capital improvement project plan planning development subdivision plat easement setback overlay "
    "residential commercial industrial agricultural parking traffic signal intersection police fire "
    "department chief manager attorney staff report recommendation consent adjourn adjourned quorum roll "
    "call present absent abstain vote unanimous carried denied tabled continued workshop session "
    "executive closed personnel litigation library park parks recreation trail playground housing "
    "affordable rental accessory dwelling unit units historic preservation landmark facade signage "
    "billboard annexation boundary census election ballot measure referendum proclamation presentation "
    "citizen resident residents applicant petitioner neighbor neighbors testimony notice published posted "
    "engineer inspector code enforcement nuisance abatement lien fee fees schedule rate rates increase "
    "audit auditor treasurer payroll pension insurance liability claim settlement lease franchise cable "
    "broadband solar wind energy emissions climate sustainability recycling waste landfill compost tree "
    "canopy forestry wetland floodplain drainage culvert bridge road paving pothole snow removal transit "
    "bus bicycle pedestrian crosswalk school superintendent enrollment cemetery airport harbor marina "
    "beach lifeguard animal shelter dog leash noise curfew fireworks alcohol tobacco vaping marijuana "
    "dispensaries cultivation retail sales excise councilmember alderman trustee supervisor commissioner "
    "selectman chairperson chair vice secretary minutes approved reading adopted ordinances resolutions "
    "rezoning rezone zoned variance variances conditional special use uses site review design "
    "architectural committee subcommittee task force advisory hearings testimony continued postponed "
    "agenda amended consent calendar warrants claims disbursements invoices purchase order procurement "
    "vendor consultant engineering survey appraisal acquisition right-of-way encroachment vacation alley "
    "lot lots acre acres square feet zone zones density height story stories building buildings "
    "demolition renovation construction occupancy certificate inspection compliance violation violations "
    "citation fine fines penalty appeal appeals staffing overtime union collective bargaining agreement "
    "memorandum understanding interlocal intergovernmental county state federal legislature statute "
    "statutes charter bylaws policy policies procedure procedures manual strategic goals priorities "
    "objectives performance metrics dashboard quarterly annual monthly report reports update updates "
    "presentation discussion possible action direction consensus"
).split()

# Spanish, with accents: bilingual notices and interpretation appear in many places' records, and accents are
# what the unaccent dictionary of the `civic` text search configuration exists for.
SPANISH_WORDS = (
    "café información año años reunión reuniones público pública comunidad vecinos ciudad consejo servicios "
    "educación participación audiencia comisión presupuesto vivienda política económico traducción "
    "interpretación español niños señor señora también días según número área más está aquí acción "
    "administración licencia permiso zonificación parque seguridad salud familias"
).split()

# Real words that few pages use (animal-control and agriculture items): a rare term for searches and
# benchmarks to look for, unlike filler words, which nobody would type. the benchmarks in ops/bench/ query "wombat".
RARE_WORDS = "wombat raccoon coyote opossum beaver heron alpaca llama peacock rooster beekeeping".split()

PHRASES = (
    # (phrase, relative weight): the common ones appear in most documents, the rare ones in a few.
    ("public hearing", 30),
    ("consent agenda", 20),
    ("call to order", 14),
    ("roll call", 14),
    ("public comment", 22),
    ("second reading", 10),
    ("first reading", 10),
    ("liquor license", 8),
    ("executive session", 8),
    ("conditional use permit", 7),
    ("site plan review", 6),
    ("budget amendment", 6),
    ("zoning variance", 5),
    ("capital improvement plan", 5),
    ("Main Street", 6),
    ("affordable housing", 5),
    ("short-term rental", 4),
    ("cannabis dispensary", 3),
    ("special use permit", 4),
    ("comprehensive plan", 4),
    ("stormwater management", 3),
    ("tax increment financing", 2),
    ("motion carried", 10),
    ("rezoning Main Street", 1),
    ("reunión pública", 1),
    ("información en español", 1),
    ("board of adjustment", 2),
)

# Now and then a page mentions "Parks & Recreation" or a threshold with "<": text a client must HTML-escape.
AMPERSAND_SNIPPETS = (
    "Parks & Recreation",
    "Q&A",
    "AT&T franchise agreement",
    "P&Z",
    "Smith & Associates",
    "R&D",
    "Planning & Zoning",
    "Water & Sewer Fund",
    "B&O tax",
    "Johnson & Sons Construction",
)
ANGLE_SNIPPETS = (
    "purchases < $5,000 need no bid",
    "lots < 5,000 sq ft",
    "height > 35 ft",
    "vote count < quorum",
    "<see attached exhibit>",
    "speed > 25 mph",
)

SURNAMES = (
    "Smith Johnson Williams Brown Jones Miller Davis García Rodríguez Martínez Hernández López González "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Pérez Thompson White Harris Sánchez Clark "
    "Ramírez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Kim Patel Okafor Kowalski O'Brien Schmidt "
    "Rossi Yamamoto Chen Novak"
).split()
TITLES = ("Councilmember", "Commissioner", "Trustee", "Alderman", "Supervisor", "Member", "Mayor", "Chair")
MOTION_VERBS = ("approve", "adopt", "deny", "continue", "table", "accept", "authorize", "refer")

# Meeting bodies by kind of municipality; the first is the governing body and meets most often.
BODIES: dict[str, tuple[str, ...]] = {
    "city": (
        "CityCouncil",
        "PlanningCommission",
        "ZoningBoardOfAppeals",
        "ParksAndRecreationCommittee",
        "HistoricPreservationCommission",
        "LibraryBoardOfTrustees",
        "FinanceCommittee",
        "PublicSafetyCommittee",
        "CityCouncilWorkSession",
        "CityCouncilSpecialMeeting",
        "CannabisAdvisoryBoard",
        "LiquorLicenseCommission",
        "HousingAuthority",
        "RedevelopmentAgency",
        "TransportationCommission",
        "ArtsCommission",
        "SustainabilityCommission",
        "CivilServiceCommission",
        "ZBAHearing",
        "PlanningAndZoningCommission",
    ),
    "town": (
        "TownCouncil",
        "BoardOfSelectmen",
        "PlanningBoard",
        "ZoningBoardOfAppeals",
        "ConservationCommission",
        "FinanceCommittee",
        "TownMeeting",
        "BoardOfHealth",
        "HistoricDistrictCommission",
        "ZBAHearing",
        "ParksAndRecreationCommittee",
        "CapitalPlanningCommittee",
    ),
    "village": (
        "VillageBoard",
        "PlanAndZoningCommission",
        "ZoningBoardOfAppeals",
        "ParksAndRecreationCommittee",
        "VillageBoardWorkSession",
        "LiquorControlCommission",
        "EconomicDevelopmentCommission",
        "PoliceAndFireCommission",
    ),
    "county": (
        "BoardOfSupervisors",
        "CountyCommission",
        "PlanningCommission",
        "BoardOfHealth",
        "BoardOfEqualization",
        "BoardOfSupervisorsBudgetHearing",
        "ZoningBoardOfAdjustment",
        "CannabisAdvisoryBoard",
        "AirportAuthority",
        "SolidWasteAdvisoryCommittee",
    ),
    "township": (
        "TownshipBoard",
        "TownshipTrustees",
        "ZoningCommission",
        "ZoningBoardOfAppeals",
        "PlanningCommission",
        "ParksAndRecreationCommittee",
    ),
    "borough": (
        "BoroughCouncil",
        "PlanningCommission",
        "ZoningHearingBoard",
        "ShadeTreeCommission",
        "BoroughCouncilWorkSession",
        "EnvironmentalAdvisoryCouncil",
    ),
}
KINDS = (("city", 45), ("town", 22), ("village", 10), ("county", 12), ("township", 7), ("borough", 4))

# Roughly each state's population in millions; town counts follow its square root, so that small states are
# present too (searches filter by many states; the weights need not be a census).
STATES = (
    ("CA", 39),
    ("TX", 30),
    ("FL", 22),
    ("NY", 20),
    ("PA", 13),
    ("IL", 12.5),
    ("OH", 11.8),
    ("GA", 11),
    ("NC", 10.7),
    ("MI", 10),
    ("NJ", 9.3),
    ("VA", 8.7),
    ("WA", 7.8),
    ("AZ", 7.4),
    ("MA", 7),
    ("TN", 7),
    ("IN", 6.8),
    ("MD", 6.2),
    ("MO", 6.2),
    ("WI", 5.9),
    ("CO", 5.8),
    ("MN", 5.7),
    ("SC", 5.3),
    ("AL", 5.1),
    ("LA", 4.6),
    ("KY", 4.5),
    ("OR", 4.2),
    ("OK", 4),
    ("CT", 3.6),
    ("UT", 3.4),
    ("IA", 3.2),
    ("NV", 3.2),
    ("AR", 3),
    ("MS", 2.9),
    ("KS", 2.9),
    ("NM", 2.1),
    ("NE", 2),
    ("ID", 1.9),
    ("WV", 1.8),
    ("HI", 1.4),
    ("NH", 1.4),
    ("ME", 1.4),
    ("MT", 1.1),
    ("RI", 1.1),
    ("DE", 1),
    ("SD", 0.9),
    ("ND", 0.8),
    ("AK", 0.7),
    ("DC", 0.7),
    ("VT", 0.6),
    ("WY", 0.6),
)
SPANISH_NAMED_STATES = frozenset({"CA", "TX", "NM", "AZ", "CO", "FL", "NV"})
TOWNSHIP_STATES = frozenset({"MI", "NJ", "PA", "OH", "IN", "MN", "IL"})
BOROUGH_STATES = frozenset({"PA", "NJ", "CT", "AK"})

NAME_ROOTS = (
    "Spring Oak Maple Cedar River Fair Green Brook Clear Glen Pine Elm Ash Stone Mill Wood Red White "
    "Black Silver Golden Rock Sand Bay Lake Hill Summer Winter Mead Wil Har Lin Ken Bell Carl Dun Ches "
    "Wells Bridge Mans Frank Madi Clay Marion Jeffer Hamil Wash Lex Ply Salem Avon Ever Hollis Bright "
    "Chat Cran Dover"
).split()
NAME_SUFFIXES = (
    "field ville ton burg dale wood port ford view haven ridge mont land brook side wick worth chester bury "
    "ston by ham ley water"
).split()
NAME_PREFIXES = ("North ", "South ", "East ", "West ", "Lake ", "Mount ", "Fort ", "Port ", "New ", "Glen ")
SPANISH_NAMES = (
    "San José",
    "San Mateo",
    "San Rafael",
    "San Benito",
    "San Andrés",
    "Santa Rosa",
    "Santa Clara",
    "Santa Fe",
    "Santa Mónica",
    "Santa Bárbara",
    "Los Álamos",
    "Las Cruces",
    "El Paso",
    "Los Robles",
    "Las Lomas",
    "Española",
    "Cañon City",
    "La Quinta",
    "Buena Vista",
    "Del Mar",
    "Alamogordo",
    "Los Gatos",
    "Mesa Verde",
    "Río Rancho",
    "Peñasco",
)

ONSETS = (
    "b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r s sc sh sl sp st t th tr v w y z"
).split()
NUCLEI = "a e i o u a e i o ai ea ee oo ou".split()
CODAS = ("", "", "", "n", "r", "s", "l", "t", "m", "nd", "st", "ck", "ng", "x", "rt")

MONTHS = ("January February March April May June July August September October November December").split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
PLACES = (
    "Council Chambers, 100 Main Street",
    "City Hall, Room 201",
    "Municipal Building, 2nd Floor",
    "Community Center, 45 Park Avenue",
    "Public Library Meeting Room",
    "Town Hall Auditorium",
    "Government Center, Board Room",
    "Virtual meeting via Zoom",
)


def seeded_random(seed: int | str) -> random.Random:
    """A private generator: reproducible from its seed (a ``str`` is hashed with SHA-512, never ``hash()``).

    Never the module-level ``random`` functions, whose shared state any other code may advance.
    """
    return random.Random(seed)  # noqa: S311 - synthetic data, reproducibility is the point
