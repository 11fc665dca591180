// The search page: reads the search from the URL, runs it against /graphql, and renders results, paging and
// errors. Every change of search goes through the URL (history.pushState), so back/forward, reload and shared
// links all reproduce what is on screen.

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
import {
  STATES,
  documentTypeLabel,
  el,
  formatDate,
  meetingTitle,
  pageImageUrl,
  resultCountText,
  safeHeadline,
} from './format.js';
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
  detail: $('detail'),
  detailBack: $('detail-back'),
  detailHeading: $('detail-heading'),
  detailMeta: $('detail-meta'),
  detailLinks: $('detail-links'),
  detailStatus: $('detail-status'),
  detailText: $('detail-text'),
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

function navigate(s, { replace = false } = {}) {
  const url = `${window.location.pathname}${searchFromState(s)}`;
  if (replace) window.history.replaceState({ results: true }, '', url);
  else window.history.pushState({ results: true }, '', url);
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

function renderEdge(edge) {
  const page = edge.node;
  const doc = page.document;
  const town = doc.municipality;
  const item = el('li', 'result');

  const title = el('h3', 'result-title');
  const link = el('a', null, meetingTitle(doc.meetingName));
  link.href = `${window.location.pathname}${window.location.search}#page=${encodeURIComponent(page.id)}`;
  link.dataset.pageId = page.id;
  title.append(link);

  const meta = el('p', 'meta');
  const time = el('time', null, formatDate(doc.meetingDate));
  time.dateTime = doc.meetingDate;
  meta.append(
    el('span', 'meta-town', `${town.name}, ${town.state}`),
    time,
    el('span', 'meta-type', documentTypeLabel(doc.documentType)),
    el('span', 'meta-page', `Page ${page.pageNumber}`),
  );

  const headline = el('p', 'headline');
  headline.append(safeHeadline(edge.headline));

  item.append(title, meta, headline);
  const image = pageImageUrl(page.pageImage, town.subdomain);
  if (image) {
    const links = el('p', 'links');
    const a = el('a', null, `Page image (page ${page.pageNumber})`);
    a.href = image;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    links.append(a);
    item.append(links);
  }
  return item;
}

function renderSearch(data) {
  const connection = data.search;
  pageInfo = connection.pageInfo;
  ui.results.replaceChildren(...connection.edges.map(renderEdge));
  const count = resultCountText(connection.totalCount);
  if (connection.edges.length === 0) {
    ui.status.textContent = current.after || current.before ? 'No more results.' : 'No results. Try fewer words or filters.';
  } else {
    ui.status.textContent = count;
  }
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

// --- one page in full --------------------------------------------------------------------------------------

async function showDetail(id) {
  ui.resultsSection.hidden = true;
  ui.detail.hidden = false;
  ui.detailHeading.textContent = 'Loading page…';
  ui.detailMeta.textContent = '';
  ui.detailLinks.replaceChildren();
  ui.detailText.textContent = '';
  ui.detailStatus.textContent = '';
  delete ui.detail.dataset.loaded;
  ui.detailBack.href = `${window.location.pathname}${window.location.search}`;
  if (inflight) inflight.abort();
  const controller = new AbortController();
  inflight = controller;
  try {
    const data = await request(PAGE, { id }, { signal: controller.signal });
    const page = data.node;
    if (!page || page.__typename !== 'MeetingPage') {
      ui.detailHeading.textContent = 'Page not found';
      ui.detailStatus.textContent = 'This page is not in the records (it may have been replaced or removed).';
      return;
    }
    const doc = page.document;
    const town = doc.municipality;
    ui.detailHeading.textContent = `${meetingTitle(doc.meetingName)} — ${town.name}, ${town.state}`;
    ui.detailMeta.textContent = [
      formatDate(doc.meetingDate),
      documentTypeLabel(doc.documentType),
      `Page ${page.pageNumber}`,
    ].join(' · ');
    const image = pageImageUrl(page.pageImage, town.subdomain);
    if (image) {
      const a = el('a', null, 'Page image');
      a.href = image;
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      ui.detailLinks.append(a);
    }
    ui.detailText.textContent = page.text;
    ui.detailHeading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  } catch (error) {
    if (error && error.name === 'AbortError') return;
    const failure = describeFailure(error);
    ui.detailHeading.textContent = failure.title;
    ui.detailStatus.textContent = failure.detail;
  } finally {
    if (inflight === controller) inflight = null;
    if (!controller.signal.aborted) ui.detail.dataset.loaded = id;
  }
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
    showDetail(pageId);
    return;
  }
  ui.detail.hidden = true;
  ui.resultsSection.hidden = false;
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
  navigate(s);
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

// Result links open the page view in place (same URL plus #page=<id>), keeping the search for Back.
ui.results.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-page-id]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) {
    return;
  }
  event.preventDefault();
  window.history.pushState({ detail: true }, '', link.href);
  route();
});
ui.detailBack.addEventListener('click', (event) => {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  if (window.history.state && window.history.state.detail) window.history.back();
  else {
    window.history.pushState({ results: true }, '', ui.detailBack.href);
    route();
  }
});

window.addEventListener('popstate', () => route());
window.addEventListener('hashchange', () => route());

route({ force: true });
