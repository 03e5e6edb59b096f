//! The history's SQLite side: schema, batched writes, pages, pruning.
//!
//! Durability as the host's store: WAL with `synchronous = NORMAL`, so a
//! committed batch survives the process being killed (it is in the WAL in
//! the kernel's page cache); only a power loss can take the last ones.

use std::path::Path;
use std::time::Duration;

use hive_proto::{Bytes, Event, HistoryResult};
use rusqlite::{params, Connection, OpenFlags};

use super::budget::Evicted;
use super::{Entry, MAX_PAGE_BYTES};

/// How often the retention policy runs (on the writer, after a batch).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot start the history writer: {0}")]
    Thread(std::io::Error),
}

pub struct Limits {
    pub max_age_ms: i64,
    pub max_per_topic: u64,
    /// The byte budget ([`super::budget`]; 0 = none).
    pub max_bytes: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Open the writer's and the reader's connections; returns them with the
/// journal's name and its newest number.
pub fn open(path: Option<&Path>) -> Result<(Connection, Connection, String, u64), HistoryError> {
    let (writer, reader) = match path {
        Some(path) => {
            let writer = Connection::open(path)?;
            writer.pragma_update(None, "journal_mode", "WAL")?;
            (writer, None)
        }
        None => {
            // Shared cache so that the reader sees the writer's database.
            let uri = format!(
                "file:hive-history-{}?mode=memory&cache=shared",
                hex::encode(rand::random::<[u8; 8]>())
            );
            let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_URI;
            let writer = Connection::open_with_flags(&uri, flags)?;
            let reader = Connection::open_with_flags(&uri, flags)?;
            (writer, Some(reader))
        }
    };
    writer.pragma_update(None, "synchronous", "NORMAL")?;
    writer.busy_timeout(Duration::from_secs(5))?;
    writer.execute_batch(
        "CREATE TABLE IF NOT EXISTS history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            topic TEXT,
            peer TEXT NOT NULL,
            id TEXT NOT NULL,
            data BLOB NOT NULL,
            received_ms INTEGER NOT NULL,
            seqno BLOB,
            signature BLOB,
            key BLOB,
            cseq INTEGER,
            UNIQUE(kind, peer, id)
        );
        CREATE INDEX IF NOT EXISTS history_topic ON history(topic, seq);
        CREATE INDEX IF NOT EXISTS history_age ON history(received_ms);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    client_numbers(&writer)?;
    super::budget::init_schema(&writer)?;
    writer.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('journal', ?1)",
        [hex::encode(rand::random::<[u8; 16]>())],
    )?;
    let journal: String =
        writer.query_row("SELECT value FROM meta WHERE key = 'journal'", [], |r| {
            r.get(0)
        })?;
    let head = client_head(&writer)?;
    let reader = match (reader, path) {
        (Some(reader), _) => reader,
        (None, Some(path)) => Connection::open(path)?,
        (None, None) => unreachable!("an in-memory history opens its reader above"),
    };
    reader.busy_timeout(Duration::from_secs(5))?;
    Ok((writer, reader, journal, head))
}

/// Two numberings. `seq` (AUTOINCREMENT, never reused) orders every entry,
/// this node's own messages too: other nodes page by it ([`signed_since`]).
/// `cseq` numbers only what clients are handed (received messages and
/// direct messages) and is their `history_seq`: consecutive, so that a
/// skipped number always means a dropped event, and own messages (which a
/// node never hands its clients) take none. Its newest value is kept in
/// `meta` (`client_head`), so numbers are not reused once pruned either.
/// A history from before `cseq` gets it equal to `seq`.
fn client_numbers(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has_cseq: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('history') WHERE name = 'cseq'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_cseq {
        conn.execute_batch(
            "ALTER TABLE history ADD COLUMN cseq INTEGER;
             UPDATE history SET cseq = seq;",
        )?;
    }
    conn.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS history_cseq ON history(cseq);
         INSERT OR IGNORE INTO meta (key, value) VALUES ('client_head',
           COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'history'), 0));",
    )
}

/// The highest entry number kept (`seq`, own messages included; peers'
/// sync cursors count in it, where clients count in `cseq`).
pub fn newest_seq(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let max: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM history", [], |r| {
        r.get(0)
    })?;
    Ok(max.max(0) as u64)
}

/// The newest client number given out.
fn client_head(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'client_head'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

fn blob(b: &Option<Bytes>) -> Option<&[u8]> {
    b.as_ref().map(|b| b.0.as_slice())
}

/// What one batch did.
#[derive(Debug)]
pub struct Written {
    /// Per entry its number, `None` for a duplicate (same kind, sender and
    /// id as one already kept).
    pub seqs: Vec<Option<u64>>,
    /// The oldest entries evicted to keep within the byte budget.
    pub evicted: Evicted,
    /// Bytes kept after the batch.
    pub bytes: u64,
    /// The highest entry number (`seq`, own messages included) written so
    /// far on this connection.
    pub newest: u64,
}

/// Write a batch and hold the history to `max_bytes` (0 = no budget), in
/// one transaction.
pub fn write(
    conn: &mut Connection,
    batch: &[Entry],
    max_bytes: u64,
) -> Result<Written, rusqlite::Error> {
    // IMMEDIATE: the write lock is taken at BEGIN, where SQLite's busy
    // timeout applies. A deferred transaction reads `client_head` first and
    // then asks for the write lock, and that upgrade fails at once, without
    // waiting, if any other connection writes (an operator's `sqlite3`).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut seqs = Vec::with_capacity(batch.len());
    let first_head = client_head(&tx)?;
    let mut head = first_head;
    {
        // Not `INSERT OR IGNORE`: with AUTOINCREMENT an ignored duplicate
        // still uses up a number, and a skipped number is what tells the
        // host that an event was dropped on the way (a false gap, and a
        // history fetch, for every duplicate a peer sent again).
        let mut stmt = tx.prepare_cached(
            "INSERT INTO history
               (kind, topic, peer, id, data, received_ms, seqno, signature, key, cseq)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
             WHERE NOT EXISTS
               (SELECT 1 FROM history WHERE kind = ?1 AND peer = ?3 AND id = ?4)",
        )?;
        let now = now_ms();
        for entry in batch {
            let none = (None, None, None);
            let (kind, topic, from, id, data, (seqno, signature, key)) = match entry {
                Entry::Message {
                    topic,
                    from,
                    id,
                    data,
                    seqno,
                    signature,
                    key,
                    origin,
                } => (
                    match origin {
                        super::Origin::Own => "own",
                        _ => "message",
                    },
                    Some(topic.as_str()),
                    from,
                    id,
                    data,
                    (blob(seqno), blob(signature), blob(key)),
                ),
                Entry::Direct { from, id, data, .. } => ("direct", None, from, id, data, none),
            };
            // Own messages are kept for other nodes only: no client number.
            let cseq = (kind != "own").then_some(head as i64 + 1);
            let changed = stmt.execute(params![
                kind, topic, from, id, data, now, seqno, signature, key, cseq
            ])?;
            let numbered = (changed == 1).then_some(cseq).flatten();
            if numbered.is_some() {
                head += 1;
            }
            seqs.push(numbered.map(|n| n as u64));
        }
    }
    if head != first_head {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'client_head'",
            [head.to_string()],
        )?;
    }
    let newest = tx.last_insert_rowid().max(0) as u64;
    let (evicted, bytes) = super::budget::enforce(&tx, max_bytes)?;
    tx.commit()?;
    Ok(Written {
        seqs,
        evicted,
        bytes,
        newest,
    })
}

/// Entries after `after`, oldest first, at most `limit` and about
/// [`MAX_PAGE_BYTES`] of payload (always at least one).
pub fn page(
    conn: &Connection,
    journal: String,
    after: u64,
    limit: usize,
) -> Result<HistoryResult, rusqlite::Error> {
    let (first, head): (Option<i64>, i64) = conn.query_row(
        "SELECT (SELECT MIN(cseq) FROM history),
                (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'client_head')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT cseq, kind, topic, peer, id, data, seqno, signature, key FROM history
         WHERE cseq > ?1 ORDER BY cseq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![after as i64, limit as i64])?;
    let mut events = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let data: Vec<u8> = row.get(5)?;
        bytes += data.len();
        if bytes > MAX_PAGE_BYTES && !events.is_empty() {
            break;
        }
        let seq = Some(row.get::<_, i64>(0)? as u64);
        let kind: String = row.get(1)?;
        let from: String = row.get(3)?;
        let id: String = row.get(4)?;
        events.push(match kind.as_str() {
            "direct" => Event::Direct {
                from,
                id,
                data: Bytes(data),
                history_seq: seq,
            },
            _ => Event::Message {
                topic: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                from,
                id,
                data: Bytes(data),
                seqno: row.get::<_, Option<Vec<u8>>>(6)?.map(Bytes),
                signature: row.get::<_, Option<Vec<u8>>>(7)?.map(Bytes),
                key: row.get::<_, Option<Vec<u8>>>(8)?.map(Bytes),
                history_seq: seq,
            },
        });
    }
    let head = head as u64;
    Ok(HistoryResult {
        journal,
        head,
        first: first.map_or(head + 1, |f| f as u64),
        events,
    })
}

/// The retention policy: entries older than the age limit, and per topic
/// (direct messages count as one topic) all but the newest `max_per_topic`.
pub fn prune(conn: &Connection, limits: &Limits) -> Result<usize, rusqlite::Error> {
    let mut removed = conn.execute(
        "DELETE FROM history WHERE received_ms < ?1",
        params![now_ms() - limits.max_age_ms],
    )?;
    let over: Vec<Option<String>> = {
        let mut stmt =
            conn.prepare("SELECT topic FROM history GROUP BY topic HAVING COUNT(*) > ?1")?;
        let rows = stmt.query_map(params![limits.max_per_topic as i64], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for topic in over {
        removed += conn.execute(
            "DELETE FROM history WHERE topic IS ?1 AND seq <= (
                SELECT seq FROM history WHERE topic IS ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![topic, limits.max_per_topic as i64],
        )?;
    }
    if removed > 0 {
        tracing::debug!(removed, "history pruned");
    }
    Ok(removed)
}

/// One kept message as another node asks for it ([`crate::sync`]): what its
/// author signed, and this history's number for paging.
#[derive(Debug, Clone)]
pub struct Kept {
    pub seq: u64,
    /// This node's own message: `data` is what went over gossip (the
    /// envelope on) and it is signed when read ([`super::own`]).
    pub own: bool,
    pub topic: String,
    pub from: String,
    pub id: String,
    pub data: Vec<u8>,
    pub seqno: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// Signed messages of `topic` received at or after `since_ms`, with a number
/// above `after`, oldest first, at most `limit` and about
/// [`MAX_PAGE_BYTES`] of payload (always at least one).
pub fn signed_since(
    conn: &Connection,
    topic: &str,
    since_ms: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<Kept>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEPT_COLUMNS} FROM history
         WHERE kind IN ('message', 'own') AND topic = ?1 AND received_ms >= ?2 AND seq > ?3
           AND (signature IS NOT NULL OR kind = 'own')
         ORDER BY seq LIMIT ?4"
    ))?;
    let mut rows = stmt.query(params![topic, since_ms, after as i64, limit as i64])?;
    let mut page = Page::default();
    while let Some(row) = rows.next()? {
        if !page.push(kept(row, topic)?) {
            break;
        }
    }
    Ok(page.kept)
}

/// The columns [`kept`] reads, in its order: one list for every query that
/// answers [`Kept`] rows.
const KEPT_COLUMNS: &str = "seq, peer, id, data, seqno, signature, key, kind = 'own'";

/// A [`Kept`] from a row of [`KEPT_COLUMNS`].
fn kept(row: &rusqlite::Row<'_>, topic: &str) -> Result<Kept, rusqlite::Error> {
    Ok(Kept {
        seq: row.get::<_, i64>(0)? as u64,
        from: row.get(1)?,
        id: row.get(2)?,
        data: row.get(3)?,
        seqno: row.get(4)?,
        signature: row.get(5)?,
        key: row.get(6)?,
        own: row.get(7)?,
        topic: topic.to_string(),
    })
}

/// Rows up to about [`MAX_PAGE_BYTES`] of payload, always at least one.
#[derive(Default)]
struct Page {
    kept: Vec<Kept>,
    bytes: usize,
}

impl Page {
    /// Takes `row` unless the page is full; false once it is.
    fn push(&mut self, row: Kept) -> bool {
        self.bytes += row.data.len();
        if self.bytes > MAX_PAGE_BYTES && !self.kept.is_empty() {
            return false;
        }
        self.kept.push(row);
        true
    }
}

/// Ids (number, author, id, when received) of the signed messages of
/// `topic` that [`signed_since`] would answer, up to `limit`.
pub fn signed_ids_since(
    conn: &Connection,
    topic: &str,
    since_ms: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, String, String, i64)>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, peer, id, received_ms FROM history
         WHERE kind IN ('message', 'own') AND topic = ?1 AND received_ms >= ?2 AND seq > ?3
           AND (signature IS NOT NULL OR kind = 'own')
         ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![topic, since_ms, after as i64, limit as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

/// The signed messages of `topic` with these (author, id), in number order
/// (about [`MAX_PAGE_BYTES`] of payload at most, always at least one).
pub fn signed_by_ids(
    conn: &Connection,
    topic: &str,
    keys: &[(String, String)],
) -> Result<Vec<Kept>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEPT_COLUMNS} FROM history
         WHERE kind IN ('message', 'own') AND peer = ?1 AND id = ?2 AND topic = ?3
           AND (signature IS NOT NULL OR kind = 'own')"
    ))?;
    let mut page = Page::default();
    for (from, id) in keys {
        let mut rows = stmt.query(params![from, id, topic])?;
        let Some(row) = rows.next()? else { continue };
        if !page.push(kept(row, topic)?) {
            break;
        }
    }
    let mut out = page.kept;
    out.sort_by_key(|k| k.seq);
    Ok(out)
}

/// Which of these (author, id) messages the history does not hold.
pub fn missing(
    conn: &Connection,
    keys: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM history WHERE kind IN ('message', 'own') AND peer = ?1 AND id = ?2",
    )?;
    let mut out = Vec::new();
    for key in keys {
        if !stmt.exists(params![key.0, key.1])? {
            out.push(key);
        }
    }
    Ok(out)
}

/// Per topic, when its newest kept message was received (Unix ms).
pub fn newest_by_topic(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, i64>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT topic, MAX(received_ms) FROM history
         WHERE kind = 'message' AND topic IS NOT NULL GROUP BY topic",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, id: &str) -> Entry {
        Entry::Message {
            topic: "t".into(),
            from: from.into(),
            id: id.into(),
            data: id.as_bytes().to_vec(),
            seqno: None,
            signature: None,
            key: None,
            origin: crate::history::Origin::Gossip,
        }
    }

    fn own(id: &str) -> Entry {
        Entry::Message {
            topic: "t".into(),
            from: "me".into(),
            id: id.into(),
            data: id.as_bytes().to_vec(),
            seqno: Some(Bytes(vec![0; 8])),
            signature: None,
            key: None,
            origin: crate::history::Origin::Own,
        }
    }

    /// A node's own messages are there for other nodes, not for its
    /// clients: they take no client number, so the numbers clients see
    /// stay consecutive (a hole would read as a dropped event), and the
    /// sync side pages them with the others.
    #[test]
    fn own_messages_take_no_client_number_and_are_served_to_peers() {
        let (mut conn, reader, journal, _) = open(None).expect("in-memory history");
        let mut signed = message("p", "a");
        if let Entry::Message { signature, .. } = &mut signed {
            *signature = Some(Bytes(b"sig".to_vec()));
        }
        let batch = [signed, own("x"), message("p", "b"), own("x")];
        let w = write(&mut conn, &batch, 0).unwrap();
        assert_eq!(w.seqs, [Some(1), None, Some(2), None]);
        let page = page(&reader, journal, 0, 10).unwrap();
        let numbers: Vec<_> = page.events.iter().map(|e| e.history_seq()).collect();
        assert_eq!(numbers, [Some(1), Some(2)], "clients see no own message");
        assert_eq!((page.first, page.head), (1, 2));
        let served: Vec<_> = signed_since(&reader, "t", 0, 0, 10)
            .unwrap()
            .into_iter()
            .map(|k| (k.from, k.id))
            .collect();
        assert_eq!(
            served,
            [("p".into(), "a".into()), ("me".into(), "x".into())]
        );
        let keys = vec![("me".to_string(), "x".to_string())];
        assert!(missing(&reader, keys).unwrap().is_empty(), "kept once");
    }

    /// A history written before client numbers existed keeps its numbers
    /// (a host resumes from them), and new entries follow on.
    #[test]
    fn a_history_from_before_client_numbers_keeps_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE history (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, topic TEXT,
                    peer TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL,
                    received_ms INTEGER NOT NULL, seqno BLOB, signature BLOB, key BLOB,
                    UNIQUE(kind, peer, id));
                 CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO history (kind, topic, peer, id, data, received_ms)
                   VALUES ('message', 't', 'p', 'a', x'00', 0), ('message', 't', 'p', 'b', x'00', 0),
                          ('message', 't', 'p', 'c', x'00', 0);
                 DELETE FROM history WHERE id = 'a';",
            )
            .unwrap();
        }
        let (mut conn, reader, journal, head) = open(Some(&path)).unwrap();
        assert_eq!(head, 3);
        let w = write(&mut conn, &[message("p", "d")], 0).unwrap();
        assert_eq!(w.seqs, [Some(4)]);
        let page = page(&reader, journal, 0, 10).unwrap();
        let numbers: Vec<_> = page.events.iter().filter_map(|e| e.history_seq()).collect();
        assert_eq!(numbers, [2, 3, 4]);
        assert_eq!((page.first, page.head), (2, 4));
    }

    /// The host reads a skipped number as a dropped event: a duplicate
    /// (a peer's retry, a catch-up of what was already kept) must not use
    /// one up. It did with `INSERT OR IGNORE`: [1, None, 3].
    #[test]
    fn a_duplicate_does_not_skip_a_number() {
        let (mut conn, _reader, _journal, head) = open(None).expect("in-memory history");
        assert_eq!(head, 0);
        let batch = [message("p", "a"), message("p", "a"), message("p", "b")];
        let seqs = |conn: &mut Connection, batch: &[Entry]| write(conn, batch, 0).unwrap().seqs;
        assert_eq!(seqs(&mut conn, &batch), [Some(1), None, Some(2)]);
        let batch = [message("p", "b"), message("q", "a"), message("p", "c")];
        assert_eq!(seqs(&mut conn, &batch), [None, Some(3), Some(4)]);
    }
}
