// Formatting helpers. Text from the server goes into the page as text (textContent), never as HTML, with one
// exception: a search headline, which the server HTML-escapes and marks up with <mark> only (safeHeadline).

/** "ZoningBoardOfAppeals" -> "Zoning Board Of Appeals", "ZBAHearing" -> "ZBA Hearing". */
export function meetingTitle(name) {
  return String(name)
    .replace(/([a-z\d])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .trim();
}

const DATE_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  timeZone: 'UTC',
});

/** "2024-03-05" -> "Mar 5, 2024" in the reader's locale (a calendar date: no time zone shift). */
export function formatDate(isoDate) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(isoDate));
  if (!match) return String(isoDate);
  return DATE_FORMAT.format(new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]))));
}

const NUMBER_FORMAT = new Intl.NumberFormat();

/**
 * "About 10,000 results", "1 result", "No results" (or another noun: "12 matching pages"). "About" whenever the
 * server says the count is an estimate or a lower bound (totalCount.exact is false).
 */
export function resultCountText(count, noun = 'result') {
  if (!count) return '';
  const n = NUMBER_FORMAT.format(count.value);
  if (count.value === 0 && count.exact) return `No ${noun}s`;
  const word = count.value === 1 && count.exact ? noun : `${noun}s`;
  return count.exact ? `${n} ${word}` : `About ${n} ${word}`;
}

export function documentTypeLabel(type) {
  return type === 'MINUTES' ? 'Minutes' : type === 'AGENDA' ? 'Agenda' : String(type);
}

/**
 * A DocumentFragment for a headline. The contract says it is HTML-escaped text with only <mark> tags; it is
 * parsed in an inert <template> and anything else that might appear (an element other than a bare <mark>) is
 * turned back into plain text, so a broken server can never inject markup.
 */
export function safeHeadline(headline) {
  const template = document.createElement('template');
  template.innerHTML = String(headline);
  for (const element of [...template.content.querySelectorAll('*')].reverse()) {
    if (element.tagName !== 'MARK' || element.attributes.length > 0) {
      element.replaceWith(document.createTextNode(element.textContent || ''));
    }
  }
  return template.content;
}

const SUBDOMAIN_RE = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/;

/**
 * A safe http(s) URL for a page image, or null. Sources give either a full URL or a path on the
 * municipality's civic.band site ("/_agendas/CityCouncil/2024-03-05/1.png"). Any other scheme (javascript:,
 * data:) is refused: the value comes from untrusted source data.
 */
export function pageImageUrl(pageImage, subdomain) {
  if (!pageImage) return null;
  let candidate;
  if (/^https?:\/\//i.test(pageImage)) candidate = pageImage;
  else if (pageImage.startsWith('/') && !pageImage.startsWith('//') && SUBDOMAIN_RE.test(subdomain || '')) {
    candidate = `https://${subdomain}.civic.band${pageImage}`;
  } else return null;
  try {
    const url = new URL(candidate);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/** Creates an element with a class and text (always as text). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export const STATES = [
  ['AL', 'Alabama'], ['AK', 'Alaska'], ['AZ', 'Arizona'], ['AR', 'Arkansas'], ['CA', 'California'],
  ['CO', 'Colorado'], ['CT', 'Connecticut'], ['DE', 'Delaware'], ['DC', 'District of Columbia'],
  ['FL', 'Florida'], ['GA', 'Georgia'], ['HI', 'Hawaii'], ['ID', 'Idaho'], ['IL', 'Illinois'],
  ['IN', 'Indiana'], ['IA', 'Iowa'], ['KS', 'Kansas'], ['KY', 'Kentucky'], ['LA', 'Louisiana'],
  ['ME', 'Maine'], ['MD', 'Maryland'], ['MA', 'Massachusetts'], ['MI', 'Michigan'], ['MN', 'Minnesota'],
  ['MS', 'Mississippi'], ['MO', 'Missouri'], ['MT', 'Montana'], ['NE', 'Nebraska'], ['NV', 'Nevada'],
  ['NH', 'New Hampshire'], ['NJ', 'New Jersey'], ['NM', 'New Mexico'], ['NY', 'New York'],
  ['NC', 'North Carolina'], ['ND', 'North Dakota'], ['OH', 'Ohio'], ['OK', 'Oklahoma'], ['OR', 'Oregon'],
  ['PA', 'Pennsylvania'], ['RI', 'Rhode Island'], ['SC', 'South Carolina'], ['SD', 'South Dakota'],
  ['TN', 'Tennessee'], ['TX', 'Texas'], ['UT', 'Utah'], ['VT', 'Vermont'], ['VA', 'Virginia'],
  ['WA', 'Washington'], ['WV', 'West Virginia'], ['WI', 'Wisconsin'], ['WY', 'Wyoming'],
  ['PR', 'Puerto Rico'], ['GU', 'Guam'], ['VI', 'U.S. Virgin Islands'],
];
