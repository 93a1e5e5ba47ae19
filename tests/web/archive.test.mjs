import assert from "node:assert/strict";
import { describe as group, it } from "node:test";

import { ArchiveError, checkRecord, describe, newRecord } from "../../web/archive.js";

group("saved sessions", () => {
  it("makes a new empty record with dates", () => {
    const record = newRecord(new Date("2026-12-01T10:00:00Z"), "id-1");
    assert.deepEqual(record, { id: "id-1", createdAt: "2026-12-01T10:00:00.000Z", updatedAt: "2026-12-01T10:00:00.000Z", model: null, entries: [], audioEndMs: 0 });
    assert.notEqual(newRecord().id, newRecord().id);
    assert.match(newRecord().id, /^[0-9a-f]{32}$/);
  });

  it("describes a record by date, length and segments", () => {
    const record = { ...newRecord(new Date("2026-12-01T10:00:00Z"), "x"), audioEndMs: 9000, entries: [{ endMs: 4000, label: "happy" }, { endMs: 9500, label: null }] };
    assert.deepEqual(describe(record), { id: "x", createdAt: "2026-12-01T10:00:00.000Z", updatedAt: "2026-12-01T10:00:00.000Z", lengthMs: 9500, segments: 2, classified: 1 });
  });

  it("refuses damaged records", () => {
    assert.equal(checkRecord(newRecord()).entries.length, 0);
    for (const bad of [null, 5, {}, { ...newRecord(), entries: "x" }, { ...newRecord(), createdAt: "yesterday" }, { ...newRecord(), id: 7 }, { ...newRecord(), audioEndMs: "long" }]) {
      assert.throws(() => checkRecord(bad), ArchiveError);
    }
  });
});
