// Results grouped by meeting document: one card per document, holding its matching pages in page order.
//
// A page of results is a keyset page of matching *pages* (the API's order: newest, oldest or relevance). The
// cards group them by document in the order the documents first appear; each card lists the document's
// matching pages from `matchingPages` (all of them, not only those on this page of results), so the card reads
// like the meeting: page 2, page 5, page 9. "N more matching pages in this meeting" fetches the rest in place.

import { describeFailure, request } from './api.js';
import { MORE_MATCHES } from './queries.js';
import { documentTypeLabel, el, formatDate, meetingTitle, safeHeadline } from './format.js';

const NUMBER_FORMAT = new Intl.NumberFormat();

/** The document view's URL for a document (and page), carrying the search and the way back to these results. */
export function documentHref(documentId, { q, page = null, results = '' }) {
  const params = new URLSearchParams();
  if (q) params.set('q', q);
  if (page !== null && page !== undefined) params.set('page', String(page));
  if (results) params.set('r', results);
  const text = params.toString();
  return `/documents/${encodeURIComponent(documentId)}${text ? `?${text}` : ''}`;
}

/**
 * A result page as groups [{doc, hits: [pageNumber...]}]: its `documents` (each once, in the order they first
 * appear among the results) with the page numbers of this page's results in each, in page order.
 */
export function groupByDocument(documents, edges) {
  const groups = documents.map((doc) => ({ doc, hits: [] }));
  const byId = new Map(groups.map((g) => [g.doc.id, g]));
  for (const edge of edges) {
    const group = byId.get(edge.node.document.id);
    if (group) group.hits.push(edge.node.pageNumber);
  }
  for (const group of groups) group.hits.sort((a, b) => a - b);
  return groups;
}

function moreText(n) {
  return `${NUMBER_FORMAT.format(n)} more matching page${n === 1 ? '' : 's'} in this meeting`;
}

function renderMatch(match, doc, link) {
  const item = el('li', 'doc-page');
  const a = el('a', 'page-link', `Page ${match.page.pageNumber}`);
  a.href = link(doc.id, match.page.pageNumber);
  a.dataset.pageId = match.page.id;
  a.dataset.pageNumber = String(match.page.pageNumber);
  const headline = el('p', 'headline');
  headline.append(safeHeadline(match.headline));
  item.append(a, headline);
  return item;
}

/**
 * One card. `link(documentId, pageNumber|null)` makes the document view's URLs; `query` is the search text
 * (for "more"); `continued` says this document's pages began on the previous page of results.
 */
export function renderCard(group, { link, query, continued = false, index = 0 }) {
  const { doc } = group;
  const town = doc.municipality;
  const matches = doc.matchingPages;
  const card = el('li', 'result doc-card');
  card.dataset.documentId = doc.id;
  card.dataset.hits = group.hits.join(' ');

  const headingId = `card-${index}-title`;
  const title = el('h3', 'result-title');
  title.id = headingId;
  const titleLink = el('a', null, meetingTitle(doc.meetingName));
  titleLink.href = link(doc.id, null);
  title.append(titleLink);
  card.setAttribute('aria-labelledby', headingId);

  const meta = el('p', 'meta');
  const time = el('time', null, formatDate(doc.meetingDate));
  time.dateTime = doc.meetingDate;
  meta.append(
    el('span', 'meta-town', `${town.name}, ${town.state}`),
    time,
    el('span', 'meta-type', documentTypeLabel(doc.documentType)),
    el('span', 'meta-count', `${NUMBER_FORMAT.format(matches.count)} matching page${matches.count === 1 ? '' : 's'}`),
  );
  card.append(title, meta);
  if (continued) card.append(el('p', 'continued hint small', 'Continued from the previous page of results.'));

  const list = el('ol', 'doc-pages');
  list.id = `card-${index}-pages`;
  list.setAttribute('aria-label', `Matching pages of ${meetingTitle(doc.meetingName)}, in page order`);
  list.append(...matches.edges.map((m) => renderMatch(m, doc, link)));
  card.append(list);

  const rest = matches.count - matches.edges.length;
  if (rest > 0) {
    const more = el('button', 'more secondary', moreText(rest));
    more.type = 'button';
    more.setAttribute('aria-expanded', 'false');
    more.setAttribute('aria-controls', list.id);
    const status = el('p', 'more-status visually-hidden');
    status.setAttribute('role', 'status');
    more.addEventListener('click', () => expand({ more, list, status, doc, query, link, shown: matches.edges }));
    card.append(more, status);
  }
  return card;
}

/** Fetches all of a document's matching pages and shows them in place of the first few. */
async function expand({ more, list, status, doc, query, link, shown }) {
  more.disabled = true;
  more.setAttribute('aria-busy', 'true');
  status.textContent = 'Loading more matching pages…';
  try {
    const data = await request(MORE_MATCHES, { id: doc.id, query });
    const matches = data.node && data.node.matchingPages;
    if (!matches) throw new Error('no matching pages');
    const known = new Set(shown.map((m) => m.page.id));
    const added = matches.edges.filter((m) => !known.has(m.page.id));
    list.replaceChildren(...matches.edges.map((m) => renderMatch(m, doc, link)));
    more.setAttribute('aria-expanded', 'true');
    const left = matches.count - matches.edges.length;
    if (left > 0) {
      // Past the first 100: the document view lists every matching page.
      const all = el('a', 'more-link', `${NUMBER_FORMAT.format(left)} more: open the document to see every match`);
      all.href = link(doc.id, null);
      more.replaceWith(all);
    } else {
      more.hidden = true;
    }
    status.textContent = `${added.length} more matching page${added.length === 1 ? '' : 's'} shown.`;
    // Keyboard users continue where the new pages begin.
    const first = added.length ? list.querySelector(`a[data-page-id="${CSS.escape(added[0].page.id)}"]`) : null;
    if (first) first.focus();
  } catch (error) {
    more.disabled = false;
    status.textContent = describeFailure(error).detail;
    status.classList.remove('visually-hidden');
  } finally {
    more.removeAttribute('aria-busy');
  }
}
