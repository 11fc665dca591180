// The whole search lives in the address bar, so a shared link or a reload reproduces it exactly.
//
//   ?q=budget&town=alameda.ca&town=oakland.ca&state=CA&from=2023-01-01&to=2023-12-31
//    &type=minutes&meeting=council&order=oldest&after=<cursor>   (or &before=<cursor>)
//   #page=<id>   shows one page in full, over the same search

export const PAGE_SIZE = 10;
export const ORDERS = ['NEWEST', 'OLDEST', 'RELEVANCE'];
export const DOCUMENT_TYPES = ['AGENDA', 'MINUTES'];

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const STATE_RE = /^[A-Z]{2}$/;

/** An empty search: the defaults. */
export function emptyState() {
  return {
    q: '',
    towns: [],
    state: '',
    from: '',
    to: '',
    type: '',
    meeting: '',
    order: 'NEWEST',
    after: '',
    before: '',
  };
}

/** Read a search from a URL's query string; values that cannot be right are dropped, not sent. */
export function stateFromSearch(search) {
  const params = new URLSearchParams(search);
  const s = emptyState();
  s.q = (params.get('q') || '').trim();
  s.towns = [...new Set(params.getAll('town').map((t) => t.trim().toLowerCase()).filter(Boolean))];
  const state = (params.get('state') || '').trim().toUpperCase();
  s.state = STATE_RE.test(state) ? state : '';
  const from = params.get('from') || '';
  const to = params.get('to') || '';
  s.from = DATE_RE.test(from) ? from : '';
  s.to = DATE_RE.test(to) ? to : '';
  const type = (params.get('type') || '').toUpperCase();
  s.type = DOCUMENT_TYPES.includes(type) ? type : '';
  s.meeting = (params.get('meeting') || '').trim();
  const order = (params.get('order') || '').toUpperCase();
  s.order = ORDERS.includes(order) ? order : 'NEWEST';
  s.after = params.get('after') || '';
  s.before = s.after ? '' : params.get('before') || '';
  return s;
}

/** The query string of a search (with its leading "?"), defaults left out so links stay short. */
export function searchFromState(s) {
  const params = new URLSearchParams();
  if (s.q) params.set('q', s.q);
  for (const town of s.towns) params.append('town', town);
  if (s.state) params.set('state', s.state);
  if (s.from) params.set('from', s.from);
  if (s.to) params.set('to', s.to);
  if (s.type) params.set('type', s.type.toLowerCase());
  if (s.meeting) params.set('meeting', s.meeting);
  if (s.order && s.order !== 'NEWEST') params.set('order', s.order.toLowerCase());
  if (s.after) params.set('after', s.after);
  else if (s.before) params.set('before', s.before);
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The id of the page shown in full (from "#page=<id>"), or null. */
export function pageIdFromHash(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const id = params.get('page');
  return id ? id : null;
}

/** How many filters are set (for the "Filters (2)" label). */
export function activeFilterCount(s) {
  return [s.towns.length > 0, s.state, s.from, s.to, s.type, s.meeting].filter(Boolean).length;
}

/** The variables of the Search operation for a search. */
export function searchVariables(s) {
  const filter = {};
  if (s.towns.length) filter.municipalities = s.towns;
  if (s.state) filter.states = [s.state];
  if (s.from) filter.dateFrom = s.from;
  if (s.to) filter.dateTo = s.to;
  if (s.type) filter.documentType = s.type;
  if (s.meeting) filter.meetingName = s.meeting;
  const variables = { query: s.q, orderBy: s.order, filter: Object.keys(filter).length ? filter : null };
  if (s.before) {
    variables.last = PAGE_SIZE;
    variables.before = s.before;
  } else {
    variables.first = PAGE_SIZE;
    if (s.after) variables.after = s.after;
  }
  return variables;
}
