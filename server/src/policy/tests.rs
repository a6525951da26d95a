//! The policy's unit tests, and the privacy matrix of issue 11: every viewer relation x
//! privacy setting (the owner's, and for reciprocal attributes the viewer's) x attribute,
//! each cell asserted against a literal table; a failure prints every wrong cell.

use std::fmt::Write as _;
use std::time::Instant;

use tern_protocol::{Audience, ErrorCode, PrivacySettings, UserId};

use super::{Attribute, Facts, Policy, Relation, visible};
use crate::chat::limits::ChatConfig;

#[tokio::test]
async fn strangers_cost_budget_known_peers_do_not() {
    let config = ChatConfig {
        new_peer_burst: 1,
        ..ChatConfig::default()
    };
    let p = Policy::new(&config);
    let now = Instant::now();
    let (me, you) = (UserId(1), UserId(2));
    assert!(
        p.may_contact(me, you, Relation::Stranger, now)
            .await
            .is_ok()
    );
    let refused = p.may_contact(me, UserId(3), Relation::Stranger, now).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::RateLimited);
    for _ in 0..10 {
        assert!(
            p.may_contact(me, you, Relation::SharesChat, now)
                .await
                .is_ok()
        );
    }
}

const OWNER: UserId = UserId(100);
const VIEWER: UserId = UserId(200);
const SOMEONE_ELSE: UserId = UserId(300);

/// How the viewer stands to the owner.
#[derive(Debug, Clone, Copy)]
enum Rel {
    /// Viewer and owner are the same user.
    Oneself,
    /// No contact either way.
    Stranger,
    /// The owner has the viewer as a contact (not the other way).
    OwnersContact,
    /// The viewer has the owner as a contact (not the other way).
    ViewersContact,
    /// Contacts both ways.
    Mutual,
    /// Contacts both ways, and the owner blocked the viewer.
    BlockedByOwner,
    /// Contacts both ways, and the viewer blocked the owner.
    BlockedOwner,
}

const RELS: [Rel; 7] = [
    Rel::Oneself,
    Rel::Stranger,
    Rel::OwnersContact,
    Rel::ViewersContact,
    Rel::Mutual,
    Rel::BlockedByOwner,
    Rel::BlockedOwner,
];

/// A setting, named relative to the person it is about: `ExceptPeer` excepts the other user of
/// the pair (the viewer in the owner's settings, the owner in the viewer's).
#[derive(Debug, Clone, Copy)]
enum Set {
    Everyone,
    Contacts,
    ExceptPeer,
    ExceptSomeoneElse,
    Nobody,
}

const SETS: [Set; 5] = [
    Set::Everyone,
    Set::Contacts,
    Set::ExceptPeer,
    Set::ExceptSomeoneElse,
    Set::Nobody,
];

const ATTRS: [Attribute; 6] = [
    Attribute::LastSeen,
    Attribute::Online,
    Attribute::Photo,
    Attribute::About,
    Attribute::Typing,
    Attribute::ProfileChanges,
];

fn audience(s: Set, peer: UserId) -> Audience {
    match s {
        Set::Everyone => Audience::Everyone,
        Set::Contacts => Audience::Contacts,
        Set::ExceptPeer => Audience::ContactsExcept(vec![SOMEONE_ELSE, peer]),
        Set::ExceptSomeoneElse => Audience::ContactsExcept(vec![SOMEONE_ELSE]),
        Set::Nobody => Audience::Nobody,
    }
}

fn settings(s: Set, peer: UserId) -> PrivacySettings {
    let a = audience(s, peer);
    PrivacySettings {
        last_seen: a.clone(),
        online: a.clone(),
        photo: a.clone(),
        about: a,
    }
}

/// Whether the owner's setting (columns in [`SETS`] order) admits the viewer: the literal
/// expectation, written by hand from the spec, not computed by the rule under test.
fn owner_side(rel: Rel) -> &'static str {
    match rel {
        Rel::Oneself => "YYYYY",
        Rel::Stranger | Rel::ViewersContact => "YNNNN",
        Rel::OwnersContact | Rel::Mutual => "YYNYN",
        Rel::BlockedByOwner | Rel::BlockedOwner => "NNNNN",
    }
}

/// Whether the viewer's own setting admits the owner (reciprocity), same columns.
fn viewer_side(rel: Rel) -> &'static str {
    match rel {
        Rel::Oneself => "YYYYY",
        Rel::Stranger | Rel::OwnersContact => "YNNNN",
        Rel::ViewersContact | Rel::Mutual => "YYNYN",
        Rel::BlockedByOwner | Rel::BlockedOwner => "NNNNN",
    }
}

fn yes(row: &str, s: Set) -> bool {
    let col = SETS.iter().position(|x| *x as u8 == s as u8).unwrap_or(0);
    row.as_bytes().get(col) == Some(&b'Y')
}

/// The spec's expectation of one cell.
fn expected(rel: Rel, owner_set: Set, viewer_set: Set, attr: Attribute) -> bool {
    let o = yes(owner_side(rel), owner_set);
    let v = yes(viewer_side(rel), viewer_set);
    let blocked = matches!(rel, Rel::BlockedByOwner | Rel::BlockedOwner);
    match attr {
        Attribute::LastSeen | Attribute::Online => o && v,
        Attribute::Photo | Attribute::About => o,
        _ => !blocked,
    }
}

fn verdict(rel: Rel, owner_set: Set, viewer_set: Set, attr: Attribute) -> bool {
    let viewer = if matches!(rel, Rel::Oneself) {
        OWNER
    } else {
        VIEWER
    };
    let owner_settings = settings(owner_set, viewer);
    let viewer_settings = settings(viewer_set, OWNER);
    let facts = Facts {
        viewer,
        owner: OWNER,
        owner_settings: &owner_settings,
        viewer_settings: &viewer_settings,
        owner_has_viewer: matches!(
            rel,
            Rel::OwnersContact | Rel::Mutual | Rel::BlockedByOwner | Rel::BlockedOwner
        ),
        viewer_has_owner: matches!(
            rel,
            Rel::ViewersContact | Rel::Mutual | Rel::BlockedByOwner | Rel::BlockedOwner
        ),
        owner_blocked_viewer: matches!(rel, Rel::BlockedByOwner),
        viewer_blocked_owner: matches!(rel, Rel::BlockedOwner),
    };
    visible(&facts, attr)
}

#[test]
fn privacy_matrix_every_cell() {
    let mut wrong = Vec::new();
    let mut cells = 0;
    let mut table = String::new();
    for rel in RELS {
        for owner_set in SETS {
            for viewer_set in SETS {
                let mut row = format!(
                    "{:<15} O:{:<18} V:{:<18}",
                    format!("{rel:?}"),
                    format!("{owner_set:?}"),
                    format!("{viewer_set:?}")
                );
                for attr in ATTRS {
                    cells += 1;
                    let want = expected(rel, owner_set, viewer_set, attr);
                    let got = verdict(rel, owner_set, viewer_set, attr);
                    let mark = match (want == got, got) {
                        (true, true) => " Y ",
                        (true, false) => " . ",
                        (false, true) => "xY ",
                        (false, false) => "x. ",
                    };
                    let _ = write!(row, "| {mark}");
                    if want != got {
                        wrong.push(format!(
                            "{rel:?} / owner {owner_set:?} / viewer {viewer_set:?} / {attr:?}: \
                             want {want}, got {got}"
                        ));
                    }
                }
                let _ = writeln!(table, "{row}");
            }
        }
    }
    assert_eq!(cells, RELS.len() * SETS.len() * SETS.len() * ATTRS.len());
    assert!(
        wrong.is_empty(),
        "{} of {cells} privacy cells are wrong (x; Y visible, . hidden; columns {ATTRS:?}):\n\
         {table}\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn blocks_hide_everything_both_ways_even_with_everyone() {
    let open = settings(Set::Everyone, OWNER);
    for (owner_blocked_viewer, viewer_blocked_owner) in [(true, false), (false, true)] {
        let facts = Facts {
            viewer: VIEWER,
            owner: OWNER,
            owner_settings: &open,
            viewer_settings: &open,
            owner_has_viewer: true,
            viewer_has_owner: true,
            owner_blocked_viewer,
            viewer_blocked_owner,
        };
        for attr in ATTRS {
            assert!(!visible(&facts, attr), "{attr:?} leaked across a block");
        }
    }
}
