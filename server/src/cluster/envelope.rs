//! What one node publishes to another: an [`Envelope`] on the receiver's channel, postcard
//! encoded (the server already speaks postcard; no second format).
//!
//! Every envelope names its sender, the sender's boot id (random per process start, so a
//! restarted sender is a new link) and a per-link sequence number. Data envelopes take the
//! next number; a [`Body::Heartbeat`] repeats the last one taken, so a receiver notices a lost
//! tail within a heartbeat interval, not only at the next data envelope.

use serde::{Deserialize, Serialize};

/// One message on a node -> node link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node's id.
    pub from: String,
    /// The sender's boot id: a restarted sender starts a new link.
    pub boot: u64,
    /// Per-link sequence: data envelopes count up from 1; heartbeats repeat the last one sent.
    pub seq: u64,
    /// What it carries.
    pub body: Body,
}

/// The payload of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Committed updates, encoded `Frame::Event(Event::Update)`, for users on the receiver.
    Updates(Vec<(u64, Vec<u8>)>),
    /// A typing indicator for users on the receiver (ephemeral).
    Typing {
        /// Recipients.
        users: Vec<u64>,
        /// `Datagram::TypingEvent`.
        datagram: Vec<u8>,
        /// `Frame::Event(Event::Typing)`.
        frame: Vec<u8>,
    },
    /// Close a device's connections (revocation).
    CloseDevice {
        /// Owner.
        user: u64,
        /// Device.
        device: u64,
        /// Close code (`ErrorCode` number).
        code: u16,
    },
    /// The sender's first connection of these users attached, or the last detached.
    Announce {
        /// Users now hosted by the sender.
        attached: Vec<u64>,
        /// Users no longer hosted by the sender.
        detached: Vec<u64>,
    },
    /// "I have sent you up to `seq`": detects a lost tail.
    Heartbeat,
    /// The sender shuts down cleanly after `seq`: nothing of its tail is missing.
    Bye,
    /// Presence transitions on the sender: users whose first foreground connection there
    /// attached, or whose last one left (or a new peer's full online set, with no offline).
    /// Appended last, so older nodes still decode every earlier variant.
    Presence {
        /// Users now online on the sender.
        online: Vec<u64>,
        /// Users no longer online on the sender.
        offline: Vec<u64>,
    },
    /// The sender committed a social write (contacts, blocks, privacy) concerning `users`:
    /// receivers drop their cached facts and evaluate their presence views again.
    SocialChanged {
        /// Users whose facts or relations changed.
        users: Vec<u64>,
    },
}

impl Body {
    /// Whether the envelope takes a fresh sequence number (everything but heartbeat and bye).
    pub fn is_data(&self) -> bool {
        !matches!(self, Body::Heartbeat | Body::Bye)
    }
}

/// An envelope that did not decode: a foreign publisher or a newer version (counted, dropped,
/// and treated as a gap by nobody: the sequence check works on the envelopes that decode).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a postcard `Envelope`.
    #[error("undecodable cluster envelope: {0}")]
    Decode(#[from] postcard::Error),
}

impl Envelope {
    /// Encodes to bytes for `PUBLISH`.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decodes a published payload.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            from: "node-a".into(),
            boot: 7,
            seq: 3,
            body: Body::Updates(vec![(1, vec![1, 2, 3])]),
        };
        let bytes = e.encode().unwrap_or_default();
        assert_eq!(Envelope::decode(&bytes).ok(), Some(e.clone()));
        assert!(Envelope::decode(&[0xff, 0xff]).is_err());
        let p = Envelope {
            body: Body::Presence {
                online: vec![1],
                offline: vec![2, 3],
            },
            ..e
        };
        let bytes = p.encode().unwrap_or_default();
        assert_eq!(Envelope::decode(&bytes).ok(), Some(p));
        assert!(
            !Body::Heartbeat.is_data()
                && Body::Announce {
                    attached: vec![],
                    detached: vec![]
                }
                .is_data()
        );
    }

    /// The bytes of the variants appended for presence and social changes, pinned: nodes of two
    /// versions share a bus during a rolling restart, so a variant's number must never move.
    /// (The same bytes seed the `envelope` fuzz target: `fuzz/corpus/envelope/presence_and_social`.)
    #[test]
    fn appended_variants_keep_their_numbers() {
        let env = |seq, body| Envelope {
            from: "a".into(),
            boot: 1,
            seq,
            body,
        };
        let presence = env(
            1,
            Body::Presence {
                online: vec![5],
                offline: vec![],
            },
        );
        let social = env(2, Body::SocialChanged { users: vec![5, 6] });
        assert_eq!(
            presence.encode().unwrap_or_default(),
            [1, b'a', 1, 1, 6, 1, 5, 0]
        );
        assert_eq!(
            social.encode().unwrap_or_default(),
            [1, b'a', 1, 2, 7, 2, 5, 6]
        );
        assert_eq!(
            env(3, Body::Bye).encode().unwrap_or_default(),
            [1, b'a', 1, 3, 5]
        );
    }
}
