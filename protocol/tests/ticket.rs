//! Invite tickets: round trips, rejection of every mistyped character, and decoding that never
//! panics whatever is pasted.

use data_encoding::BASE32_NOPAD;
use kith_protocol::keys::{DeviceId, FamilyId};
use kith_protocol::membership::Role;
use kith_protocol::ticket::{CHECKSUM_LABEL, InviteId, MAX_ADDR_LEN, MAX_ADDRS, Ticket};
use proptest::prelude::*;

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Admin), Just(Role::Member), Just(Role::Relative)]
}

fn ticket_with(addrs: impl Strategy<Value = Vec<Vec<u8>>>) -> impl Strategy<Value = Ticket> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        addrs,
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        role(),
        any::<u64>(),
    )
        .prop_map(
            |(family, inviter, addrs, invite, secret, role, expires_at_ms)| Ticket {
                family: FamilyId(family),
                inviter: DeviceId(inviter),
                addrs,
                invite: InviteId(invite),
                secret,
                role,
                expires_at_ms,
            },
        )
}

/// Any ticket within the limits the format promises to carry.
fn ticket() -> impl Strategy<Value = Ticket> {
    ticket_with(prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..=MAX_ADDR_LEN),
        0..=MAX_ADDRS,
    ))
}

/// Characters someone might type or paste in place of one of the ticket's.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => prop::sample::select("abcdefghijklmnopqrstuvwxyz234567ABCDEFGHIJKLMNOPQRSTUVWXYZ".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("0189-_=+/.:é€ \n".chars().collect::<Vec<_>>()),
    ]
}

/// A ticket text around arbitrary inner bytes, with a correct checksum, so decoding gets past
/// the checksum and into the body.
fn framed(inner: &[u8]) -> String {
    let sum = blake3::Hasher::new_derive_key(CHECKSUM_LABEL)
        .update(inner)
        .finalize();
    let mut bytes = inner.to_vec();
    bytes.extend_from_slice(&sum.as_bytes()[..4]);
    format!("kith1{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(t in ticket()) {
        let text = t.encode();
        prop_assert!(text.starts_with("kith1"));
        prop_assert_eq!(Ticket::decode(&text), Ok(t.clone()));
        let qr = t.encode_for_qr();
        prop_assert_eq!(&qr, &text.to_ascii_uppercase());
        prop_assert_eq!(Ticket::decode(&qr), Ok(t));
    }

    /// A changed character never yields a different ticket: it is rejected, or it only changed
    /// the case and the ticket is the same.
    #[test]
    fn a_substituted_character_is_rejected(t in ticket(), at: prop::sample::Index, c in replacement()) {
        let text = t.encode();
        let i = 5 + at.index(text.len() - 5);
        let original = text.as_bytes()[i] as char;
        let mut changed = text[..i].to_string();
        changed.push(c);
        changed.push_str(&text[i + 1..]);
        match Ticket::decode(&changed) {
            Ok(decoded) => {
                prop_assert_eq!(decoded, t);
                prop_assert!(c.eq_ignore_ascii_case(&original), "{original} -> {c:?} accepted");
            }
            Err(_) => prop_assert!(!c.eq_ignore_ascii_case(&original)),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,2100}") {
        let _ = Ticket::decode(&s);
    }

    #[test]
    fn ticket_like_text_never_panics(s in "[kK][iI][tT][hH]1[a-zA-Z2-7 \n]{0,700}") {
        let _ = Ticket::decode(&s);
    }

    /// Garbage behind a valid checksum reaches the body decoder; it is refused, or it is a
    /// ticket whose only spelling is exactly this text.
    #[test]
    fn garbage_with_a_valid_checksum_never_panics(
        version in prop_oneof![Just(1u8), any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut inner = vec![version];
        inner.extend_from_slice(&body);
        let text = framed(&inner);
        if let Ok(t) = Ticket::decode(&text) {
            prop_assert_eq!(t.encode(), text);
        }
    }

    /// Two addresses of 20 bytes (an IPv6 TCP multiaddr is 21, IPv4 QUIC 11) and an expiry in
    /// this century. 112 of the bytes are ids and the secret, which base32 cannot shrink.
    #[test]
    fn a_two_address_ticket_is_compact(
        t in ticket_with(prop::collection::vec(prop::collection::vec(any::<u8>(), 20), 2)),
        expires_at_ms in 1_700_000_000_000u64..4_000_000_000_000,
    ) {
        let t = Ticket { expires_at_ms, ..t };
        let text = t.encode();
        prop_assert!(text.len() <= 273, "{} characters", text.len());
    }
}
