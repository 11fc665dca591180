// The search page: reads the search from the URL, runs it against /graphql, and renders results (one card per
// meeting document, cards.js), paging, help and errors. Every change of search goes through the URL
// (history.pushState), so back/forward, reload and shared links all reproduce what is on screen. A result
// opens the document view (/documents/<id>, served by the gateway), whose "Back to results" returns here.

import { describeFailure, request } from './api.js';
import {
  activeFilterCount,
  emptyState,
  pageIdFromHash,
  searchFromState,
  searchVariables,
  stateFromSearch,
} from './state.js';
import { PAGE, SEARCH } from './queries.js';
import { STATES, el, resultCountText } from './format.js';
import { documentHref, groupByDocument, renderCard } from './cards.js';
import { noResultSuggestions } from './help.js';
import { TownPicker } from './towns.js';

const $ = (id) => document.getElementById(id);

const ui = {
  form: $('search-form'),
  q: $('q'),
  orders: [...document.querySelectorAll('input[name="order"]')],
  filters: $('filters'),
  filterCount: $('filter-count'),
  state: $('state'),
  from: $('from'),
  to: $('to'),
  type: $('type'),
  meeting: $('meeting'),
  clearFilters: $('clear-filters'),
  resultsSection: $('results-section'),
  resultsHeading: $('results-heading'),
  status: $('status'),
  error: $('error'),
  intro: $('intro'),
  results: $('results'),
  pager: $('pager'),
  prev: $('prev'),
  next: $('next'),
  noResults: $('no-results'),
  end: $('end-of-results'),
  suggestions: $('suggestions'),
};

const towns = new TownPicker(
  { input: $('town-input'), listbox: $('town-list'), chips: $('town-chips'), status: $('town-status') },
  () => submit(),
);

/** The search on screen, as last read from the URL. */
let current = emptyState();
let pageInfo = null;
let inflight = null; // AbortController of the request being awaited
let lastRouted = null;
let focusResultsAfterLoad = false;
const responses = new Map(); // query string -> search data, so back/forward redraws at once
const MAX_REMEMBERED = 30;

// --- form <-> state ----------------------------------------------------------------------------------------

function fillStateOptions() {
  for (const [code, name] of STATES) {
    const option = document.createElement('option');
    option.value = code;
    option.textContent = `${name} (${code})`;
    ui.state.append(option);
  }
}

function showStateInForm(s) {
  ui.q.value = s.q;
  for (const radio of ui.orders) radio.checked = radio.value === s.order;
  if (s.state && ![...ui.state.options].some((o) => o.value === s.state)) {
    ui.state.append(new Option(s.state, s.state));
  }
  ui.state.value = s.state;
  ui.from.value = s.from;
  ui.to.value = s.to;
  ui.type.value = s.type;
  ui.meeting.value = s.meeting;
  towns.setStateFilter(s.state);
  towns.setSelected(s.towns);
  const active = activeFilterCount(s);
  ui.filterCount.textContent = String(active);
  ui.filterCount.hidden = active === 0;
  // Open beside the results on wide screens; on phones it stays folded (its badge counts the filters set).
  if (window.matchMedia('(min-width: 56rem)').matches) ui.filters.open = true;
}

/** A new search from the form (cursors dropped: a changed search starts at its first page). */
function stateFromForm() {
  const s = emptyState();
  s.q = ui.q.value.trim();
  s.order = (ui.orders.find((r) => r.checked) || { value: 'NEWEST' }).value;
  s.towns = [...towns.selected];
  s.state = ui.state.value;
  s.from = ui.from.value;
  s.to = ui.to.value;
  s.type = ui.type.value;
  s.meeting = ui.meeting.value.trim();
  return s;
}

function navigate(s, { replace = false, carry = null } = {}) {
  const url = `${window.location.pathname}${searchFromState(s)}`;
  if (replace) window.history.replaceState({ results: true, carry }, '', url);
  else window.history.pushState({ results: true, carry }, '', url);
  route({ force: true });
}

function submit() {
  const s = stateFromForm();
  // The same search again (e.g. a retry) replaces the history entry instead of stacking duplicates.
  navigate(s, { replace: searchFromState(s) === window.location.search && !window.location.hash });
}

// --- rendering ---------------------------------------------------------------------------------------------

let settled = 0;

/** Marks the results as loading or settled; `data-settled` counts settles (a hook for browser tests). */
function setBusy(busy) {
  ui.resultsSection.setAttribute('aria-busy', busy ? 'true' : 'false');
  if (!busy) {
    settled += 1;
    ui.resultsSection.dataset.settled = String(settled);
  }
  ui.resultsSection.classList.toggle('loading', busy);
  ui.prev.disabled = busy || !(pageInfo && pageInfo.hasPreviousPage);
  ui.next.disabled = busy || !(pageInfo && pageInfo.hasNextPage);
}

function clearError() {
  ui.error.hidden = true;
}

function showError(error) {
  const failure = describeFailure(error);
  ui.error.querySelector('.error-title').textContent = failure.title;
  ui.error.querySelector('.error-detail').textContent = failure.detail;
  ui.error.querySelector('.error-hint').hidden = !failure.isInputProblem;
  const trace = ui.error.querySelector('.error-trace');
  trace.hidden = !failure.traceId;
  trace.textContent = failure.traceId ? `Reference: ${failure.traceId}` : '';
  ui.error.hidden = false;
  ui.error.classList.toggle('input-problem', failure.isInputProblem);
  ui.status.textContent = '';
}

/** The document view's URL for a result, carrying this search and the way back to exactly these results. */
function resultLink(documentId, pageNumber) {
  return documentHref(documentId, { q: current.q, page: pageNumber, results: window.location.search });
}

function showNoResults(show) {
  ui.noResults.hidden = !show;
  if (!show) return;
  const names = new Map(towns.catalogue ? towns.catalogue.map((t) => [t.subdomain, `${t.name}, ${t.state}`]) : []);
  const items = noResultSuggestions(current, (t) => names.get(t) || t).map(({ text, href }) => {
    const item = el('li');
    const a = el('a', null, text);
    a.href = href;
    item.append(a);
    return item;
  });
  ui.suggestions.replaceChildren(...items);
  ui.suggestions.hidden = items.length === 0;
}

function renderSearch(data) {
  const connection = data.search;
  pageInfo = connection.pageInfo;
  const groups = groupByDocument(connection.documents, connection.edges);
  // The document the previous page of results ended with, when this page was reached with "Next".
  const carried = (window.history.state && window.history.state.carry) || null;
  ui.results.replaceChildren(
    ...groups.map((group, index) =>
      renderCard(group, {
        link: resultLink,
        query: current.q,
        continued: index === 0 && group.doc.id === carried && Boolean(current.after),
        index,
      }),
    ),
  );
  const count = resultCountText(connection.totalCount, 'matching page');
  const first = !(current.after || current.before);
  if (connection.edges.length === 0) {
    ui.status.textContent = first ? '' : 'No more results.';
  } else {
    const meetings = `${groups.length} meeting${groups.length === 1 ? '' : 's'} on this page`;
    ui.status.textContent = `${count} · ${meetings}`;
  }
  showNoResults(connection.edges.length === 0 && first);
  // Paging is offered only as far as the server says there is more: no page count is promised.
  ui.end.hidden = !(connection.edges.length > 0 && !pageInfo.hasNextPage && !first);
  ui.pager.hidden = !(pageInfo.hasNextPage || pageInfo.hasPreviousPage);
  setBusy(false);
  if (focusResultsAfterLoad) {
    focusResultsAfterLoad = false;
    ui.resultsHeading.focus({ preventScroll: true });
    ui.resultsSection.scrollIntoView({ block: 'start' });
  }
}

async function runSearch(s) {
  const key = searchFromState(s);
  clearError();
  ui.intro.hidden = Boolean(s.q);
  ui.noResults.hidden = true;
  ui.end.hidden = true;
  if (!s.q) {
    pageInfo = null;
    ui.results.replaceChildren();
    ui.pager.hidden = true;
    ui.status.textContent = activeFilterCount(s) ? 'Type one or more words to search with these filters.' : '';
    setBusy(false);
    return;
  }
  if (responses.has(key)) {
    renderSearch(responses.get(key));
    return;
  }
  if (inflight) inflight.abort();
  const controller = new AbortController();
  inflight = controller;
  ui.status.textContent = 'Searching…';
  setBusy(true);
  try {
    const data = await request(SEARCH, searchVariables(s), { signal: controller.signal });
    if (controller.signal.aborted) return;
    responses.set(key, data);
    if (responses.size > MAX_REMEMBERED) responses.delete(responses.keys().next().value);
    renderSearch(data);
  } catch (error) {
    if (error && error.name === 'AbortError') return;
    pageInfo = null;
    ui.results.replaceChildren();
    ui.pager.hidden = true;
    showError(error);
    setBusy(false);
  } finally {
    if (inflight === controller) inflight = null;
  }
}

// --- links of the earlier one-page view ------------------------------------------------------------------

/** "#page=<id>" (links shared before the document view existed) opens that page in the document view. */
async function openLegacyPage(id) {
  ui.status.textContent = 'Opening the page…';
  try {
    const data = await request(PAGE, { id });
    const page = data.node;
    if (page && page.__typename === 'MeetingPage') {
      const search = window.location.search;
      window.location.replace(documentHref(page.document.id, { q: current.q, page: page.pageNumber, results: search }));
      return;
    }
    ui.status.textContent = 'That page is not in the records (it may have been replaced or removed).';
  } catch (error) {
    showError(error);
  }
  window.history.replaceState({ results: true }, '', `${window.location.pathname}${window.location.search}`);
  runSearch(current);
}

// --- routing -----------------------------------------------------------------------------------------------

function route({ force = false } = {}) {
  const href = window.location.href;
  if (!force && href === lastRouted) return;
  lastRouted = href;
  current = stateFromSearch(window.location.search);
  showStateInForm(current);
  const pageId = pageIdFromHash(window.location.hash);
  if (pageId) {
    openLegacyPage(pageId);
    return;
  }
  runSearch(current);
}

function page(direction) {
  if (!pageInfo) return;
  const s = { ...current };
  if (direction === 'next' && pageInfo.hasNextPage) {
    s.after = pageInfo.endCursor;
    s.before = '';
  } else if (direction === 'prev' && pageInfo.hasPreviousPage) {
    s.before = pageInfo.startCursor;
    s.after = '';
  } else {
    return;
  }
  focusResultsAfterLoad = true;
  // Remember which document this page ended with: if the next page begins with it, its card says so.
  const cards = ui.results.querySelectorAll('.doc-card');
  const carry = direction === 'next' && cards.length ? cards[cards.length - 1].dataset.documentId : null;
  navigate(s, { carry });
}

// --- wiring ------------------------------------------------------------------------------------------------

fillStateOptions();

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  towns.close();
  submit();
});
for (const radio of ui.orders) radio.addEventListener('change', () => submit());
for (const input of [ui.state, ui.from, ui.to, ui.type]) input.addEventListener('change', () => submit());
ui.meeting.addEventListener('change', () => submit());
ui.clearFilters.addEventListener('click', () => {
  towns.setSelected([]);
  ui.state.value = '';
  ui.from.value = '';
  ui.to.value = '';
  ui.type.value = '';
  ui.meeting.value = '';
  submit();
});
ui.prev.addEventListener('click', () => page('prev'));
ui.next.addEventListener('click', () => page('next'));

// A suggestion (no results) is a search of this page: follow it in place, as the form would.
ui.suggestions.addEventListener('click', (event) => {
  const link = event.target.closest('a[href]');
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  window.history.pushState({ results: true }, '', link.getAttribute('href'));
  focusResultsAfterLoad = true;
  route();
});

window.addEventListener('popstate', () => route());
window.addEventListener('hashchange', () => route());

route({ force: true });
