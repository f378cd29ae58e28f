-- Wi-Fi scales that post to wearbridge directly (local capture). A scale is known by a
-- keyed hash of its kind and MAC address (the address itself is not stored); each of its
-- user slots (an Aria user id, a Withings user id) may be assigned to a person, whose
-- `local` account owns the captured readings.
CREATE TABLE scales (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    device_key TEXT NOT NULL UNIQUE,
    -- A keyed hash of the Aria's auth code, pinned at its first upload (a scale that
    -- presents another code is refused).
    auth_key   TEXT,
    -- What the scale's clock is corrected by (seconds), kept while it stays within
    -- tolerance so a resent reading keeps its time and id.
    clock_correction_s BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE scale_slots (
    scale_id BIGINT NOT NULL REFERENCES scales (id) ON DELETE CASCADE,
    slot     BIGINT NOT NULL,
    person   TEXT NOT NULL,
    -- The slot's last weight (g): the scale tells users apart by a window around it.
    last_grams BIGINT,
    PRIMARY KEY (scale_id, slot)
);
