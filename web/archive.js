// Sessions kept in this browser (IndexedDB): results only, never audio, so that a reload or a
// crash loses nothing and past sessions can be reopened, exported and deleted.

const DB_NAME = "emostream";
const DB_VERSION = 1;
const STORE = "sessions";
const CURRENT_KEY = "emostream.current-session";

export class ArchiveError extends Error {
  constructor(message) {
    super(message);
    this.name = "ArchiveError";
  }
}

// crypto.randomUUID exists only in secure contexts; the page also runs (uploads only) on plain HTTP.
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function newRecord(now = new Date(), id = randomId()) {
  const at = now.toISOString();
  return { id, createdAt: at, updatedAt: at, model: null, entries: [], audioEndMs: 0 };
}

// The list row of a record: its date, how much audio it spans and how many segments it holds.
export function describe(record) {
  const endMs = record.entries.reduce((end, entry) => Math.max(end, entry.endMs), record.audioEndMs || 0);
  const classified = record.entries.filter((entry) => entry.label !== null).length;
  return { id: record.id, createdAt: record.createdAt, updatedAt: record.updatedAt, lengthMs: endMs, segments: record.entries.length, classified };
}

// A record read back from storage, checked: a damaged one is refused, never half used.
export function checkRecord(record) {
  const ok =
    record !== null &&
    typeof record === "object" &&
    typeof record.id === "string" &&
    typeof record.createdAt === "string" &&
    !Number.isNaN(Date.parse(record.createdAt)) &&
    Array.isArray(record.entries) &&
    Number.isFinite(record.audioEndMs ?? 0);
  if (!ok) throw new ArchiveError(`a saved session is damaged (${String(record && record.id).slice(0, 40)})`);
  return record;
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(new ArchiveError(`browser storage failed: ${req.error && req.error.message}`));
  });
}

export class SessionArchive {
  constructor(db, storage) {
    this.db = db;
    this.storage = storage;
  }

  static async open({ indexedDB = globalThis.indexedDB, storage = globalThis.localStorage } = {}) {
    if (!indexedDB) throw new ArchiveError("this browser has no IndexedDB");
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: "id" });
      store.createIndex("updatedAt", "updatedAt");
    };
    return new SessionArchive(await request(req), storage);
  }

  async run(mode, work) {
    const tx = this.db.transaction(STORE, mode);
    const result = await request(work(tx.objectStore(STORE)));
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(new ArchiveError(`browser storage failed: ${tx.error && tx.error.message}`));
    });
    return result;
  }

  save(record) {
    return this.run("readwrite", (store) => store.put(record));
  }

  async get(id) {
    const record = await this.run("readonly", (store) => store.get(id));
    return record === undefined ? null : checkRecord(record);
  }

  // Every saved session, newest first; damaged ones are left out.
  async list() {
    const records = await this.run("readonly", (store) => store.getAll());
    const good = [];
    for (const record of records) {
      try {
        good.push(checkRecord(record));
      } catch (error) {
        if (!(error instanceof ArchiveError)) throw error;
        console.warn(error.message);
      }
    }
    return good.sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : -1));
  }

  delete(id) {
    if (this.currentId() === id) this.setCurrent(null);
    return this.run("readwrite", (store) => store.delete(id));
  }

  // The session the page shows, reopened after a reload.
  currentId() {
    return this.storage ? this.storage.getItem(CURRENT_KEY) : null;
  }

  setCurrent(id) {
    if (!this.storage) return;
    if (id === null) this.storage.removeItem(CURRENT_KEY);
    else this.storage.setItem(CURRENT_KEY, id);
  }
}
