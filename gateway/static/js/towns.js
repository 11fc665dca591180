// The municipality filter: a multi-select with type-ahead (the ARIA 1.2 combobox pattern with a listbox).
//
// The list comes from the `municipalities` query, read once (100 at a time) when the box is first used, and
// filtered here as the person types: by name or subdomain, words that start with the typed text first.
// Keys: Down/Up move through the suggestions, Enter picks one, Escape closes the list, Backspace in an empty
// box removes the last chosen town. Each chosen town is a chip with its own remove button.

import { request } from './api.js';
import { MUNICIPALITIES } from './queries.js';
import { el } from './format.js';

const MAX_SUGGESTIONS = 8;
const MAX_CATALOGUE_PAGES = 50; // 5,000 municipalities at most; the page stays usable if there are more

let cataloguePromise = null;

/** Every municipality as {subdomain, name, state}, fetched once per page load. */
export function loadCatalogue() {
  if (!cataloguePromise) {
    cataloguePromise = (async () => {
      const towns = [];
      let after = null;
      for (let page = 0; page < MAX_CATALOGUE_PAGES; page += 1) {
        const data = await request(MUNICIPALITIES, { after });
        const connection = data.municipalities;
        for (const edge of connection.edges) towns.push(edge.node);
        if (!connection.pageInfo.hasNextPage) break;
        after = connection.pageInfo.endCursor;
      }
      return towns;
    })().catch((error) => {
      cataloguePromise = null; // let a later focus try again
      throw error;
    });
  }
  return cataloguePromise;
}

function rankTown(town, needle) {
  const name = town.name.toLowerCase();
  const sub = town.subdomain.toLowerCase();
  if (name.startsWith(needle) || sub.startsWith(needle)) return 0;
  if (name.split(/[\s-]+/).some((word) => word.startsWith(needle))) return 1;
  if (name.includes(needle) || sub.includes(needle)) return 2;
  return -1;
}

export class TownPicker {
  /**
   * @param {object} parts - {input, listbox, chips, status} elements from the page
   * @param {(towns: string[]) => void} onChange - called with the subdomains after each pick or removal
   */
  constructor({ input, listbox, chips, status }, onChange) {
    this.input = input;
    this.listbox = listbox;
    this.chips = chips;
    this.status = status;
    this.onChange = onChange;
    this.selected = [];
    this.byName = new Map(); // subdomain -> {subdomain, name, state}
    this.options = [];
    this.active = -1;
    this.stateFilter = '';
    this.catalogue = null;

    input.addEventListener('focus', () => this.ensureCatalogue());
    input.addEventListener('input', () => this.refresh());
    input.addEventListener('keydown', (event) => this.onKey(event));
    input.addEventListener('blur', () => {
      // Let a click on an option land before the list closes.
      window.setTimeout(() => this.close(), 150);
    });
    listbox.addEventListener('mousedown', (event) => event.preventDefault());
    listbox.addEventListener('click', (event) => {
      const option = event.target.closest('[role="option"]');
      if (option) this.pick(Number(option.dataset.index));
    });
  }

  /** Show these subdomains as chosen (from the URL); names fill in once the list is loaded. */
  setSelected(subdomains) {
    this.selected = [...subdomains];
    this.renderChips();
    if (this.selected.some((s) => !this.byName.has(s))) this.ensureCatalogue();
  }

  /** Suggest only towns of this state ('' for all). */
  setStateFilter(state) {
    this.stateFilter = state;
  }

  async ensureCatalogue() {
    if (this.catalogue) return;
    try {
      this.status.textContent = 'Loading municipalities…';
      this.catalogue = await loadCatalogue();
      for (const town of this.catalogue) this.byName.set(town.subdomain, town);
      this.status.textContent = '';
      this.renderChips();
      if (document.activeElement === this.input) this.refresh();
    } catch {
      this.status.textContent = 'The list of municipalities could not be loaded.';
    }
  }

  refresh() {
    const needle = this.input.value.trim().toLowerCase();
    if (!needle || !this.catalogue) {
      this.close();
      return;
    }
    const ranked = [];
    for (const town of this.catalogue) {
      if (this.selected.includes(town.subdomain)) continue;
      if (this.stateFilter && town.state !== this.stateFilter) continue;
      const rank = rankTown(town, needle);
      if (rank >= 0) ranked.push([rank, town]);
    }
    ranked.sort((a, b) => a[0] - b[0] || a[1].name.localeCompare(b[1].name));
    this.options = ranked.slice(0, MAX_SUGGESTIONS).map(([, town]) => town);
    this.active = this.options.length ? 0 : -1;
    this.renderOptions();
  }

  renderOptions() {
    this.listbox.replaceChildren();
    if (!this.options.length) {
      this.status.textContent = this.input.value.trim() ? 'No municipality matches.' : '';
      this.close(false);
      return;
    }
    this.options.forEach((town, index) => {
      const option = el('li', 'town-option');
      option.id = `town-option-${index}`;
      option.setAttribute('role', 'option');
      option.dataset.index = String(index);
      option.setAttribute('aria-selected', index === this.active ? 'true' : 'false');
      option.append(el('span', 'town-option-name', `${town.name}, ${town.state}`));
      option.append(el('span', 'town-option-sub', town.subdomain));
      this.listbox.append(option);
    });
    this.listbox.hidden = false;
    this.input.setAttribute('aria-expanded', 'true');
    this.input.setAttribute('aria-activedescendant', this.active >= 0 ? `town-option-${this.active}` : '');
    const n = this.options.length;
    this.status.textContent = `${n} suggestion${n === 1 ? '' : 's'}; use the arrow keys and Enter to choose.`;
  }

  close(clearStatus = true) {
    this.listbox.hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
    this.active = -1;
    if (clearStatus && this.status.textContent !== 'Loading municipalities…') this.status.textContent = '';
  }

  isOpen() {
    return !this.listbox.hidden && this.options.length > 0;
  }

  onKey(event) {
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      if (!this.isOpen()) {
        this.refresh();
      } else {
        const step = event.key === 'ArrowDown' ? 1 : -1;
        this.active = (this.active + step + this.options.length) % this.options.length;
        this.renderOptions();
        const option = document.getElementById(`town-option-${this.active}`);
        if (option) option.scrollIntoView({ block: 'nearest' });
      }
      event.preventDefault();
    } else if (event.key === 'Enter') {
      if (this.isOpen() && this.active >= 0) {
        event.preventDefault(); // pick the town; do not submit the search
        this.pick(this.active);
      }
    } else if (event.key === 'Escape') {
      if (this.isOpen()) {
        event.preventDefault();
        this.close();
      }
    } else if (event.key === 'Backspace' && this.input.value === '' && this.selected.length) {
      this.remove(this.selected[this.selected.length - 1]);
    }
  }

  pick(index) {
    const town = this.options[index];
    if (!town) return;
    this.selected.push(town.subdomain);
    this.input.value = '';
    this.close();
    this.renderChips();
    this.status.textContent = `${town.name}, ${town.state} added.`;
    this.onChange([...this.selected]);
  }

  remove(subdomain) {
    this.selected = this.selected.filter((s) => s !== subdomain);
    this.renderChips();
    const town = this.byName.get(subdomain);
    this.status.textContent = `${town ? town.name : subdomain} removed.`;
    this.input.focus();
    this.onChange([...this.selected]);
  }

  renderChips() {
    this.chips.replaceChildren();
    for (const subdomain of this.selected) {
      const town = this.byName.get(subdomain);
      const label = town ? `${town.name}, ${town.state}` : subdomain;
      const chip = el('li', 'chip');
      chip.append(el('span', 'chip-label', label));
      const button = el('button', 'chip-remove', '×');
      button.type = 'button';
      button.setAttribute('aria-label', `Remove ${label}`);
      button.addEventListener('click', () => this.remove(subdomain));
      chip.append(button);
      this.chips.append(chip);
    }
    this.chips.hidden = this.selected.length === 0;
  }
}
