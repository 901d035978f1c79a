//! The one vocabulary for where a message stands towards a next hop (issue
//! #12, "honest states"): the queue's `status` column, the `status` of
//! delivery attempts' and operators' audit records, `emla queue`, `emla
//! audit search --status`, the web view and the receipts all use it.
//!
//! The gateway only ever knows that the *next hop* took the message (its
//! `250`), never that a mailbox holds it; so the state after a `250` is
//! `relayed`, not "delivered". Records and rows written before this
//! vocabulary say `queued` (now `accepted`) and `delivered` (now
//! `relayed`): they are read under the new names, never rewritten (the
//! audit chain hashes them as written).

use std::fmt;

/// Where a message (a queue entry, or one recipient of it) stands. Read
/// from JSON also under its older names ([`DeliveryState::old_names`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Accepted and recorded; not yet relayed (waiting for an attempt or a
    /// retry).
    #[serde(alias = "queued")]
    Accepted,
    /// The next hop answered `250` to the data (its queue id is kept when
    /// it names one): the gateway's part is done.
    #[serde(alias = "delivered")]
    Relayed,
    /// Still not relayed `delay_warning_secs` after it was accepted; still
    /// being tried until the queue lifetime.
    Delayed,
    /// Refused for good by the next hop, or not relayed within the queue
    /// lifetime.
    Failed,
    /// An administrator stopped it (`emla queue cancel`).
    Cancelled,
    /// Refused at the end of DATA: never accepted, so never queued (a
    /// rejection notice states it; in the log it is the verdict).
    Rejected,
}

impl DeliveryState {
    /// Every state, in the order of the documentation.
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Accepted,
        DeliveryState::Relayed,
        DeliveryState::Delayed,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
        DeliveryState::Rejected,
    ];

    /// The states in which the relay still tries: an attempt may change
    /// them.
    pub const PENDING: [DeliveryState; 2] = [DeliveryState::Accepted, DeliveryState::Delayed];

    /// The name as stored, shown and filtered on.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Accepted => "accepted",
            DeliveryState::Relayed => "relayed",
            DeliveryState::Delayed => "delayed",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
            DeliveryState::Rejected => "rejected",
        }
    }

    /// The names an older version stored for this state.
    pub fn old_names(self) -> &'static [&'static str] {
        match self {
            DeliveryState::Accepted => &["queued"],
            DeliveryState::Relayed => &["delivered"],
            _ => &[],
        }
    }

    /// Every name a stored row or record may hold for this state: its own,
    /// then the older ones.
    pub fn stored_names(self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.as_str()).chain(self.old_names().iter().copied())
    }

    /// Parses a state's name, or one an older version wrote (`queued`,
    /// `delivered`).
    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|d| d.stored_names().any(|n| n == s))
    }

    /// Whether the relay still tries it.
    pub fn is_pending(self) -> bool {
        DeliveryState::PENDING.contains(&self)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filter's value: a state's name, or an older name of it (then `note`
/// says which name it is now).
pub fn parse_filter(flag: &str, s: &str) -> Result<(DeliveryState, Option<String>), String> {
    let t = s.trim().to_ascii_lowercase();
    match DeliveryState::parse(&t) {
        Some(state) if state.as_str() == t => Ok((state, None)),
        Some(state) => Ok((
            state,
            Some(format!(
                "{flag} {t}: the state is now called {state}, showing {state} entries"
            )),
        )),
        None => Err(format!(
            "{flag} {s:?}: expected one of {}",
            DeliveryState::ALL.map(DeliveryState::as_str).join(", ")
        )),
    }
}

/// The order in which the states of a message's queue entries decide its
/// one state in a search result: the least advanced wins (one entry
/// delayed and one relayed: delayed; all relayed: relayed).
pub const SUMMARY_ORDER: [DeliveryState; 5] = [
    DeliveryState::Delayed,
    DeliveryState::Accepted,
    DeliveryState::Failed,
    DeliveryState::Cancelled,
    DeliveryState::Relayed,
];

/// SQL selecting, as `state_rank`, the place in [`SUMMARY_ORDER`] of the
/// least advanced queue entry of the message `m` (NULL without entries).
pub fn summary_rank_sql() -> String {
    let cases: Vec<String> = SUMMARY_ORDER
        .iter()
        .enumerate()
        .map(|(i, s)| format!("WHEN q.status IN ({}) THEN {i}", sql_names(&[*s])))
        .collect();
    format!(
        "(SELECT CAST(MIN(CASE {} END) AS BIGINT) FROM queue q WHERE q.message_id = m.id) \
         AS state_rank",
        cases.join(" ")
    )
}

/// A message's one state: `rejected` when it was refused, else that of its
/// least advanced queue entry (`rank`, as [`summary_rank_sql`] selects it);
/// `None` for an accepted message without queue entries.
pub fn summary(verdict: super::Verdict, rank: Option<i64>) -> Option<DeliveryState> {
    if verdict == super::Verdict::Reject {
        return Some(DeliveryState::Rejected);
    }
    let rank = usize::try_from(rank?).ok()?;
    SUMMARY_ORDER.get(rank).copied()
}

/// SQL `IN (…)` list of every stored name of `states` (quoted constants;
/// the names are ours, never user input).
pub fn sql_names(states: &[DeliveryState]) -> String {
    states
        .iter()
        .flat_map(|s| s.stored_names())
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_old_names_read() {
        let all = DeliveryState::ALL;
        crate::reason::assert_names_round_trip(&all, DeliveryState::as_str, DeliveryState::parse);
        for s in all {
            assert_eq!(format!("\"{s}\""), serde_json::to_string(&s).unwrap());
            // serde's aliases are the older names.
            for old in s.old_names() {
                let json = format!("\"{old}\"");
                assert_eq!(serde_json::from_str::<DeliveryState>(&json).unwrap(), s);
            }
        }
        assert_eq!(
            DeliveryState::parse("queued"),
            Some(DeliveryState::Accepted)
        );
        assert_eq!(
            serde_json::from_str::<DeliveryState>("\"delivered\"").unwrap(),
            DeliveryState::Relayed
        );
        assert_eq!(DeliveryState::parse("sent"), None);
        assert!(serde_json::from_str::<DeliveryState>("\"sent\"").is_err());
        assert!(DeliveryState::Delayed.is_pending());
        assert!(!DeliveryState::Relayed.is_pending());
    }

    #[test]
    fn filters_take_old_names_and_say_the_new_one() {
        assert_eq!(
            parse_filter("--status", "relayed"),
            Ok((DeliveryState::Relayed, None))
        );
        let (s, note) = parse_filter("--status", "Delivered").unwrap();
        assert_eq!(s, DeliveryState::Relayed);
        assert!(note.unwrap().contains("now called relayed"));
        let e = parse_filter("--status", "sent").unwrap_err();
        assert!(
            e.contains("accepted, relayed, delayed, failed, cancelled, rejected"),
            "{e}"
        );
        assert_eq!(
            sql_names(&DeliveryState::PENDING),
            "'accepted', 'queued', 'delayed'"
        );
    }

    #[test]
    fn a_message_has_the_state_of_its_least_advanced_entry() {
        use super::super::Verdict;
        assert_eq!(
            summary(Verdict::Reject, None),
            Some(DeliveryState::Rejected)
        );
        assert_eq!(summary(Verdict::Accept, None), None);
        assert_eq!(
            summary(Verdict::Accept, Some(0)),
            Some(DeliveryState::Delayed)
        );
        assert_eq!(
            summary(Verdict::Accept, Some(4)),
            Some(DeliveryState::Relayed)
        );
        assert_eq!(summary(Verdict::Accept, Some(9)), None);
        let sql = summary_rank_sql();
        assert!(
            sql.contains("WHEN q.status IN ('relayed', 'delivered') THEN 4"),
            "{sql}"
        );
    }

    #[test]
    fn every_state_is_in_the_contract() {
        let documented = super::super::kind::contract_table("Delivery states");
        let ours: Vec<String> = DeliveryState::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(documented, ours, "docs/contracts.md vs DeliveryState::ALL");
    }
}
