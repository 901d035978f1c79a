//! The label sets of the metric families (docs/contracts.md "Metrics").

use prometheus_client::encoding::EncodeLabelSet;

/// Declares each `Name { label: type, … }` as a label set: its field names
/// are the label names.
macro_rules! label_sets {
    ($($name:ident { $($label:ident: $ty:ty),* })*) => {
        $(
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            pub struct $name {
                $(pub $label: $ty),*
            }
        )*
    };
}

label_sets! {
    DecisionLabels { reason: &'static str, authority: String, verdict: &'static str }
    ClassLabels { class: &'static str }
    RelayLabels { next_hop: String, outcome: &'static str }
    KindLabels { kind: &'static str }
    FetchLabels { source: &'static str, outcome: &'static str }
    OutcomeLabels { outcome: &'static str }
    LaneLabels { lane: &'static str }
    QueueLabels { status: String, lane: String }
    CrlLabels { authority: String, source: String }
    VersionLabels { version: String }
}
