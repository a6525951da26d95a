//! The media counters (`tern_media_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label of the per-outcome series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `stored`, `deduplicated`, `resumed`, or the error code's name.
    pub result: String,
}

/// Label of the byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `in` (uploads) or `out` (downloads).
    pub dir: String,
}

/// Media counters.
#[derive(Debug, Clone, Default)]
pub struct MediaMetrics {
    /// Upload streams by outcome.
    pub uploads: Family<OutcomeLabel, Counter>,
    /// Download streams by outcome.
    pub downloads: Family<OutcomeLabel, Counter>,
    /// Media bytes received and sent.
    pub bytes: Family<DirectionLabel, Counter>,
    /// Unfinished uploads removed after their lifetime.
    pub uploads_expired: Counter,
    /// Media objects no message referenced any more, collected after the grace period.
    pub collected: Counter,
    /// Objects the collector deleted (parts, markers, thumbnails).
    pub objects_deleted: Counter,
    /// `bytes{dir="in"}` and `{dir="out"}`, held so counting a chunk allocates nothing.
    bytes_in: Counter,
    bytes_out: Counter,
}

impl MediaMetrics {
    /// Registers the series in `r` (prefix `tern_media_`).
    pub fn register(r: &mut Registry) -> Self {
        let mut m = MediaMetrics::default();
        m.bytes_in = m
            .bytes
            .get_or_create(&DirectionLabel { dir: "in".into() })
            .clone();
        m.bytes_out = m
            .bytes
            .get_or_create(&DirectionLabel { dir: "out".into() })
            .clone();
        let r = r.sub_registry_with_prefix("media");
        r.register(
            "uploads",
            "Media upload streams by outcome",
            m.uploads.clone(),
        );
        r.register(
            "downloads",
            "Media download streams by outcome",
            m.downloads.clone(),
        );
        r.register("bytes", "Media bytes by direction", m.bytes.clone());
        r.register(
            "uploads_expired",
            "Unfinished uploads removed after their lifetime",
            m.uploads_expired.clone(),
        );
        r.register(
            "collected",
            "Unreferenced media collected after the grace period",
            m.collected.clone(),
        );
        r.register(
            "objects_deleted",
            "Objects deleted by the media collector",
            m.objects_deleted.clone(),
        );
        m
    }

    /// Counts an upload's outcome.
    pub fn upload(&self, result: &str) {
        self.uploads
            .get_or_create(&OutcomeLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a download's outcome.
    pub fn download(&self, result: &str) {
        self.downloads
            .get_or_create(&OutcomeLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts bytes in one direction.
    pub fn bytes(&self, dir: &'static str, n: u64) {
        match dir {
            "in" => self.bytes_in.inc_by(n),
            _ => self.bytes_out.inc_by(n),
        };
    }
}
