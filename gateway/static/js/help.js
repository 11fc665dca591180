// What to suggest when a search finds nothing: each thing that can be removed, as a link to the search without it.

import { emptyState, searchFromState } from './state.js';
import { documentTypeLabel } from './format.js';

function without(s, change) {
  const next = { ...emptyState(), ...s, towns: [...s.towns], after: '', before: '' };
  change(next);
  return `/${searchFromState(next)}`;
}

/** The words of a query with quotes and exclusions taken out ("budget -parking" -> "budget"). */
function plainWords(q) {
  return q
    .replace(/"/g, ' ')
    .split(/\s+/)
    .filter((w) => w && !w.startsWith('-') && w.toLowerCase() !== 'or');
}

/**
 * Suggestions for a search with no results: [{text, href}], most helpful first. `townName(subdomain)` gives a
 * municipality's display name when it is known.
 */
export function noResultSuggestions(s, townName = (t) => t) {
  const out = [];
  if (s.q.includes('"')) {
    const unquoted = s.q.replace(/"/g, '').replace(/\s+/g, ' ').trim();
    if (unquoted) {
      out.push({
        text: `Remove the quotes: ${unquoted} (the words anywhere on the page, in any form)`,
        href: without(s, (n) => {
          n.q = unquoted;
        }),
      });
    }
  }
  const excluded = s.q.split(/\s+/).filter((w) => w.length > 1 && w.startsWith('-'));
  if (excluded.length) {
    const kept = s.q
      .split(/\s+/)
      .filter((w) => !excluded.includes(w))
      .join(' ')
      .trim();
    if (kept) {
      out.push({
        text: `Remove the excluded word${excluded.length > 1 ? 's' : ''} ${excluded.join(' ')}`,
        href: without(s, (n) => {
          n.q = kept;
        }),
      });
    }
  }
  const words = plainWords(s.q);
  if (words.length > 1 && !/\bor\b/i.test(s.q)) {
    out.push({
      text: `Match any of the words: ${words.join(' or ')}`,
      href: without(s, (n) => {
        n.q = words.join(' or ');
      }),
    });
  }
  for (const town of s.towns) {
    out.push({
      text: `Remove the filter: ${townName(town)}`,
      href: without(s, (n) => {
        n.towns = n.towns.filter((t) => t !== town);
      }),
    });
  }
  if (s.state) {
    out.push({ text: `Remove the filter: state ${s.state}`, href: without(s, (n) => { n.state = ''; }) });
  }
  if (s.from || s.to) {
    const range = [s.from && `from ${s.from}`, s.to && `to ${s.to}`].filter(Boolean).join(' ');
    out.push({
      text: `Remove the filter: dates ${range}`,
      href: without(s, (n) => {
        n.from = '';
        n.to = '';
      }),
    });
  }
  if (s.type) {
    out.push({
      text: `Remove the filter: ${documentTypeLabel(s.type)} only`,
      href: without(s, (n) => { n.type = ''; }),
    });
  }
  if (s.meeting) {
    out.push({
      text: `Remove the filter: meeting name “${s.meeting}”`,
      href: without(s, (n) => { n.meeting = ''; }),
    });
  }
  return out;
}
