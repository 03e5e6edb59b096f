//! The stored list of nodes, `<data dir>/nodes.json`: written atomically on
//! every change, read back by a restarted host.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Hive, HiveError, NodeRecord, ROOT_ID};

impl Hive {
    pub(super) fn nodes_file(&self) -> PathBuf {
        self.inner.template.data_dir.join("nodes.json")
    }

    /// Bring back the nodes stored by an earlier run, parents before their
    /// children, each once its parent runs. Progress goes to the log.
    pub async fn restore(&self) {
        let records: Vec<NodeRecord> = match std::fs::read(self.nodes_file()) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(error = %e, file = %self.nodes_file().display(), "cannot read the stored nodes; starting none of them");
                    return;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored nodes");
                return;
            }
        };
        let highest = records
            .iter()
            .filter_map(|r| r.id.strip_prefix('n')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.inner.next_id.fetch_max(highest + 1, Ordering::SeqCst);
        let total = records.len();
        for (i, record) in records.into_iter().enumerate() {
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            let Some(parent) = record.parent.as_deref().and_then(|p| self.get(p)) else {
                tracing::warn!(id = %record.id, "stored node has no parent any more; skipped");
                continue;
            };
            let bootstrap = self.wait_addrs(&parent).await;
            let id = record.id.clone();
            match self.start_child(record, bootstrap) {
                Ok(node) => {
                    let running = self.wait_running(&node).await;
                    tracing::info!(%id, n = i + 1, total, running, "restored node");
                }
                Err(e) => tracing::error!(%id, error = %e, "cannot restore node"),
            }
        }
    }

    /// Write the list of nodes beside the host's data (atomically).
    pub(super) fn persist(&self) -> Result<(), HiveError> {
        let records: Vec<NodeRecord> = self
            .all()
            .iter()
            .filter(|n| n.record.id != ROOT_ID)
            .map(|n| n.record.clone())
            .collect();
        let bytes = serde_json::to_vec_pretty(&records)
            .map_err(|e| HiveError::Io(format!("cannot encode the node list: {e}")))?;
        write_atomically(&self.nodes_file(), &bytes)
            .map_err(|e| HiveError::Io(format!("cannot store the node list: {e}")))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
