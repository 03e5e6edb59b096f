//! The event broadcasts of the host and the daemon, one `Arc` per slot.
//!
//! tokio's broadcast channel allocates and writes every slot when it is
//! created. Slots of a whole [`crate::Event`] (about 200 bytes) made the
//! host's two 16,384-slot channels 7 MB per node before anything was sent
//! (7 GB for a hive of 1,000 nodes), and the daemon's 8,192 slots 1.7 MB of
//! each daemon's memory. A slot of an `Arc` is a pointer: the same channels
//! cost a few hundred KiB. Receivers get their own copy of each value, as
//! they did with a channel of the values themselves.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error};

/// The sending side; cheap to clone.
#[derive(Debug)]
pub struct Fanout<T> {
    tx: broadcast::Sender<Arc<T>>,
}

impl<T> Clone for Fanout<T> {
    fn clone(&self) -> Self {
        Fanout {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Clone> Fanout<T> {
    /// A channel that keeps the last `capacity` values for slow receivers.
    pub fn new(capacity: usize) -> Self {
        Fanout {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Hand `value` to every receiver; `Err` when there is none (which is
    /// fine for an event nobody listens to).
    pub fn send(&self, value: T) -> Result<usize, error::SendError<()>> {
        self.tx
            .send(Arc::new(value))
            .map_err(|_| error::SendError(()))
    }

    /// A receiver of every value sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            rx: self.tx.subscribe(),
        }
    }
}

/// The receiving side, with tokio's `recv` and `try_recv` semantics.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: broadcast::Receiver<Arc<T>>,
}

impl<T: Clone> Receiver<T> {
    pub async fn recv(&mut self) -> Result<T, error::RecvError> {
        self.rx.recv().await.map(Arc::unwrap_or_clone)
    }

    pub fn try_recv(&mut self) -> Result<T, error::TryRecvError> {
        self.rx.try_recv().map(Arc::unwrap_or_clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_gets_each_value_and_a_slow_one_learns_what_it_missed() {
        let tx = Fanout::new(2);
        let mut a = tx.subscribe();
        let mut b = tx.subscribe();
        for i in 0..3u32 {
            tx.send(i).expect("receivers");
        }
        assert!(matches!(a.try_recv(), Err(error::TryRecvError::Lagged(1))));
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
        assert!(matches!(b.try_recv(), Err(error::TryRecvError::Lagged(1))));
        drop((a, b));
        assert!(tx.send(9).is_err(), "nobody listens");
    }
}
