//! Invite tickets: the text (and QR code) that lets a new device join a family, and the proof a
//! joining device gives that it holds one.
//!
//! # Format v1
//!
//! ```text
//! ticket   = "kith1" ‖ base32(version ‖ body ‖ checksum)    RFC 4648 alphabet, lowercase, no padding
//! version  = 0x01
//! body     = postcard(family [32] ‖ inviter [32] ‖ addrs (varint count, each varint len ‖ bytes)
//!                     ‖ invite [16] ‖ secret [32] ‖ role (varint) ‖ expires_at_ms (varint))
//! checksum = first 4 bytes of BLAKE3 in derive_key mode, context "kith ticket checksum v1",
//!            over version ‖ body
//! ```
//!
//! Why this shape:
//! - **base32** has one alphabet that fits a QR code's dense alphanumeric mode when upper-cased
//!   ([`Ticket::encode_for_qr`]) and survives chat apps, e-mail and hand typing when lower-cased: no
//!   `+`, `/` or `=` for a link detector to cut at. Decoding ignores case and ASCII whitespace, so a
//!   ticket that was wrapped or shouted still works.
//! - The **`kith1` prefix** tells a ticket apart from any other text; `1` is not a base32
//!   character, so the prefix can never run into the data (the bech32 habit).
//! - The **checksum** turns a mistyped or truncated copy into "copy it again" instead of a
//!   confusing parse error. It is not a security mechanism (anyone can recompute it): what makes a
//!   join safe is the Noise handshake with the ticket's inviter device and the invite proof below.
//!   Its framing is the same for every format version, so an old node tells a newer ticket
//!   ([`TicketError::UnsupportedVersion`]) from a damaged one.
//! - Decoding re-encodes the body and rejects anything that is not the canonical encoding, so a
//!   ticket has exactly one spelling (up to case and whitespace).
//!
//! A ticket is a bearer credential until it is used or expires: whoever reads it can join. Its
//! [`Debug`](fmt::Debug) output leaves the secret out, so it cannot leak through a log line.
//!
//! # Invite proof
//!
//! The secret never crosses the wire. Over the Noise-authenticated connection the joiner sends
//! [`invite_proof`]: keyed BLAKE3 under `derive_key("kith invite v1", secret)` over
//! `invite id [16] ‖ inviter device id [32] ‖ joiner device id [32] ‖ joiner X25519 key [32]`
//! (fixed lengths, so no two inputs share an encoding). Binding both device ids means the proof
//! cannot be replayed by another peer or towards another inviter; binding the X25519 key means no
//! one in between can swap the key the family will wrap album keys to. The inviter checks the
//! joiner id against the connection's peer id and calls [`verify_invite_proof`]; rate limiting
//! failed proofs and consuming the invite id are the node's job.
//!
//! When the ticket travelled over a channel that is not face to face, both screens show
//! [`verification_code`] so the two people can compare it over the phone.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE32_NOPAD, BASE32_NOPAD_NOCASE, HEXLOWER};
use serde::{Deserialize, Serialize};

use crate::keys::{DeviceId, FamilyId, KeyError, write_hex};
use crate::membership::Role;

/// Every ticket's text starts with this (case-insensitively).
pub const TICKET_PREFIX: &str = "kith1";
/// The format version this module writes and reads.
pub const TICKET_VERSION: u8 = 1;
/// Derivation context of the checksum at the end of a ticket.
pub const CHECKSUM_LABEL: &str = "kith ticket checksum v1";
/// Length of the checksum at the end of a ticket.
pub const CHECKSUM_LEN: usize = 4;
/// Most addresses a ticket carries.
pub const MAX_ADDRS: usize = 8;
/// Longest address (binary multiaddr) a ticket carries.
pub const MAX_ADDR_LEN: usize = 64;
/// Longest text [`Ticket::decode`] looks at, whitespace included. The largest valid ticket
/// (8 addresses of 64 bytes) is about 1,050 characters; the rest is room for line breaks.
pub const MAX_TICKET_TEXT_LEN: usize = 2048;
/// Derivation context of the invite proof's key.
pub const INVITE_PROOF_LABEL: &str = "kith invite v1";
/// Derivation context of the verification code.
pub const VERIFICATION_CODE_LABEL: &str = "kith verification code v1";

/// 16 random bytes naming one invite. Displayed as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InviteId(pub [u8; 16]);

impl InviteId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteId(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

impl FromStr for InviteId {
    type Err = KeyError;
    /// Parses exactly 32 lowercase hex characters (one spelling per id, like the other ids).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(KeyError::BadLength {
                expected: 32,
                got: s.len(),
            });
        }
        let mut out = [0u8; 16];
        HEXLOWER
            .decode_mut(s.as_bytes(), &mut out)
            .map_err(|_| KeyError::BadHex)?;
        Ok(InviteId(out))
    }
}

/// Why a text was not accepted as a ticket. The messages are shown to users as they are.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    #[error("this is not a kith invite ticket (it should start with {TICKET_PREFIX})")]
    NotATicket,
    #[error("the ticket was altered or mistyped: copy it again")]
    Damaged,
    #[error(
        "this ticket uses format version {0}, which this version of kith cannot read: \
         update kith and try again"
    )]
    UnsupportedVersion(u8),
    #[error(
        "the ticket's contents are invalid ({0}): ask the person who invited you for a new ticket"
    )]
    Malformed(String),
    #[error(
        "this text is too long to be a kith invite ticket: copy only the ticket, \
         which starts with {TICKET_PREFIX}"
    )]
    TooLong,
}

/// An invitation to join a family: who to connect to, and the one-time secret to prove.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The family to join.
    pub family: FamilyId,
    /// The device that issued the ticket and will answer the join.
    pub inviter: DeviceId,
    /// Where the inviter can be reached: libp2p multiaddrs in their binary form. At most
    /// [`MAX_ADDRS`] of at most [`MAX_ADDR_LEN`] bytes each are encoded.
    pub addrs: Vec<Vec<u8>>,
    /// Names the invite, so the inviter can find, consume or cancel it.
    pub invite: InviteId,
    /// The one-time secret the joiner proves with [`invite_proof`]. Never sent anywhere.
    pub secret: [u8; 32],
    /// The role the new person gets.
    pub role: Role,
    /// When the ticket stops working, in unix milliseconds.
    pub expires_at_ms: u64,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| HEXLOWER.encode(a)).collect();
        f.debug_struct("Ticket")
            .field("family", &self.family)
            .field("inviter", &self.inviter)
            .field("addrs", &addrs)
            .field("invite", &self.invite)
            .field("secret", &"<hidden>")
            .field("role", &self.role)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// The body as it is encoded; the field order is the format.
#[derive(Serialize, Deserialize)]
struct Body {
    family: FamilyId,
    inviter: DeviceId,
    addrs: Vec<Vec<u8>>,
    invite: InviteId,
    secret: [u8; 32],
    role: Role,
    expires_at_ms: u64,
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let hash = blake3::Hasher::new_derive_key(CHECKSUM_LABEL)
        .update(bytes)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&hash.as_bytes()[..CHECKSUM_LEN]);
    out
}

fn addr_fits(addr: &[u8]) -> bool {
    addr.len() <= MAX_ADDR_LEN
}

impl Ticket {
    /// The ticket as text: `kith1` followed by lowercase base32.
    ///
    /// Addresses longer than [`MAX_ADDR_LEN`] and those beyond the first [`MAX_ADDRS`] that fit
    /// are left out: the joiner needs one address that works, and learns the rest from the
    /// inviter once connected.
    pub fn encode(&self) -> String {
        let body = Body {
            family: self.family,
            inviter: self.inviter,
            addrs: self
                .addrs
                .iter()
                .filter(|a| addr_fits(a))
                .take(MAX_ADDRS)
                .cloned()
                .collect(),
            invite: self.invite,
            secret: self.secret,
            role: self.role,
            expires_at_ms: self.expires_at_ms,
        };
        let mut bytes = vec![TICKET_VERSION];
        // Serializing plain data into a Vec cannot fail.
        bytes.extend_from_slice(&postcard::to_allocvec(&body).unwrap_or_default());
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        let mut text =
            String::with_capacity(TICKET_PREFIX.len() + BASE32_NOPAD.encode_len(bytes.len()));
        text.push_str(TICKET_PREFIX);
        text.push_str(&BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
        text
    }

    /// The same ticket upper-cased, for QR codes: upper-case letters and digits fit the QR
    /// alphanumeric mode, which takes 5.5 bits a character instead of 8.
    pub fn encode_for_qr(&self) -> String {
        self.encode().to_ascii_uppercase()
    }

    /// Reads a ticket as a person pasted or typed it: any case, ASCII whitespace anywhere.
    /// Never panics, whatever the input.
    pub fn decode(text: &str) -> Result<Ticket, TicketError> {
        if text.len() > MAX_TICKET_TEXT_LEN {
            return Err(TicketError::TooLong);
        }
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let prefix = TICKET_PREFIX.as_bytes();
        let data = match compact.split_at_checked(prefix.len()) {
            Some((head, data)) if head.eq_ignore_ascii_case(prefix) => data,
            _ => return Err(TicketError::NotATicket),
        };
        let bytes = BASE32_NOPAD_NOCASE
            .decode(data)
            .map_err(|_| TicketError::Damaged)?;
        let (signed, sum) = bytes
            .split_at_checked(bytes.len().wrapping_sub(CHECKSUM_LEN))
            .filter(|(signed, _)| !signed.is_empty())
            .ok_or(TicketError::Damaged)?;
        if checksum(signed) != sum {
            return Err(TicketError::Damaged);
        }
        let (&version, body_bytes) = signed.split_first().ok_or(TicketError::Damaged)?;
        if version != TICKET_VERSION {
            return Err(TicketError::UnsupportedVersion(version));
        }
        let (body, rest) = postcard::take_from_bytes::<Body>(body_bytes)
            .map_err(|e| TicketError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(TicketError::Malformed(format!(
                "{} unexpected bytes at the end",
                rest.len()
            )));
        }
        if postcard::to_allocvec(&body).ok().as_deref() != Some(body_bytes) {
            return Err(TicketError::Malformed("not canonically encoded".into()));
        }
        if body.addrs.len() > MAX_ADDRS || !body.addrs.iter().all(|a| addr_fits(a)) {
            return Err(TicketError::Malformed(format!(
                "more than {MAX_ADDRS} addresses or an address longer than {MAX_ADDR_LEN} bytes"
            )));
        }
        Ok(Ticket {
            family: body.family,
            inviter: body.inviter,
            addrs: body.addrs,
            invite: body.invite,
            secret: body.secret,
            role: body.role,
            expires_at_ms: body.expires_at_ms,
        })
    }

    /// Whether the ticket no longer works at `now_ms` (unix milliseconds). It works up to, not
    /// including, `expires_at_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

/// The keyed hash behind [`invite_proof`] and [`verify_invite_proof`].
fn proof_hash(
    secret: &[u8; 32],
    invite: &InviteId,
    inviter: &DeviceId,
    joiner: &DeviceId,
    joiner_x25519: &[u8; 32],
) -> blake3::Hash {
    let key = blake3::derive_key(INVITE_PROOF_LABEL, secret);
    blake3::Hasher::new_keyed(&key)
        .update(invite.as_bytes())
        .update(inviter.as_bytes())
        .update(joiner.as_bytes())
        .update(joiner_x25519)
        .finalize()
}

/// What a joining device sends to prove it holds the ticket's secret, bound to the invite, to
/// both devices and to the joiner's X25519 public key.
pub fn invite_proof(
    secret: &[u8; 32],
    invite: &InviteId,
    inviter: &DeviceId,
    joiner: &DeviceId,
    joiner_x25519: &[u8; 32],
) -> [u8; 32] {
    *proof_hash(secret, invite, inviter, joiner, joiner_x25519).as_bytes()
}

/// Checks an [`invite_proof`] in constant time. `joiner` must be the peer id of the
/// authenticated connection the proof arrived on.
pub fn verify_invite_proof(
    secret: &[u8; 32],
    invite: &InviteId,
    inviter: &DeviceId,
    joiner: &DeviceId,
    joiner_x25519: &[u8; 32],
    proof: &[u8; 32],
) -> bool {
    // `blake3::Hash` compares in constant time.
    proof_hash(secret, invite, inviter, joiner, joiner_x25519) == blake3::Hash::from_bytes(*proof)
}

/// A short code both screens show during a join, shown as `"123 456"`. Derived from both device
/// ids and the same whichever order they are given in, so inviter and joiner compute it alike.
pub fn verification_code(a: &DeviceId, b: &DeviceId) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let hash = blake3::Hasher::new_derive_key(VERIFICATION_CODE_LABEL)
        .update(low.as_bytes())
        .update(high.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    // The bias of a 64-bit number modulo 10^6 is below 10^-13.
    let n = u64::from_le_bytes(first) % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            family: FamilyId([1; 32]),
            inviter: DeviceId([2; 32]),
            // /ip4/192.168.1.20/tcp/4242 and /ip4/192.168.1.20/udp/4242/quic-v1
            addrs: vec![
                vec![4, 192, 168, 1, 20, 6, 0x10, 0x92],
                vec![4, 192, 168, 1, 20, 0x91, 0x02, 0x10, 0x92, 0xcc, 0x03],
            ],
            invite: InviteId([3; 16]),
            secret: [4; 32],
            role: Role::Member,
            expires_at_ms: 1_750_000_000_000,
        }
    }

    #[test]
    fn round_trip_and_prefix() {
        let t = ticket();
        let text = t.encode();
        assert!(text.starts_with("kith1"), "{text}");
        assert_eq!(text, text.to_ascii_lowercase());
        assert!(
            text[5..]
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
        );
        assert_eq!(Ticket::decode(&text), Ok(t));
    }

    /// Pins format v1: a change here breaks every ticket already handed out.
    #[test]
    fn golden_encoding() {
        let text = ticket().encode();
        assert_eq!(text, GOLDEN);
        assert_eq!(Ticket::decode(GOLDEN), Ok(ticket()));
    }
    const GOLDEN: &str = concat!(
        "kith1aeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaqcaibaeaqcaibaeaqcaib",
        "aeaqcaibaeaqcaibaeaqcaibaeaqcaieajqfiaekameesbmcmbkabcsiqeeeszqbqgaydambqgaydamb",
        "qgaydambqgbaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeagalra5b64zd4y4yga",
    );

    #[test]
    fn upper_case_and_whitespace_are_accepted() {
        let t = ticket();
        let upper = t.encode_for_qr();
        assert!(upper.starts_with("KITH1"));
        assert_eq!(upper, upper.to_ascii_uppercase());
        assert_eq!(Ticket::decode(&upper), Ok(t.clone()));

        let text = t.encode();
        let wrapped: String = text
            .as_bytes()
            .chunks(20)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n\t ");
        assert_eq!(Ticket::decode(&format!("  {wrapped}\n")), Ok(t.clone()));
        let mixed: String = text
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 3 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(Ticket::decode(&mixed), Ok(t));
    }

    #[test]
    fn wrong_prefix_is_not_a_ticket() {
        let text = ticket().encode();
        for bad in [
            String::new(),
            "kith".into(),
            "hello".into(),
            text.replacen("kith1", "kith2", 1),
            text.replacen("kith1", "", 1),
            format!("x{text}"),
            "kit\u{e9}1abc".into(),
        ] {
            assert_eq!(
                Ticket::decode(&bad),
                Err(TicketError::NotATicket),
                "{bad:?}"
            );
        }
        assert_eq!(
            TicketError::NotATicket.to_string(),
            "this is not a kith invite ticket (it should start with kith1)"
        );
    }

    #[test]
    fn a_changed_character_is_damage() {
        let text = ticket().encode();
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let flipped: String = chars.iter().collect();
        assert_eq!(Ticket::decode(&flipped), Err(TicketError::Damaged));
        // Not in the alphabet, truncated, extended, prefix only.
        assert_eq!(
            Ticket::decode(&format!("{}0{}", &text[..9], &text[10..])),
            Err(TicketError::Damaged)
        );
        assert_eq!(
            Ticket::decode(&text[..text.len() - 1]),
            Err(TicketError::Damaged)
        );
        assert_eq!(
            Ticket::decode(&format!("{text}a")),
            Err(TicketError::Damaged)
        );
        assert_eq!(Ticket::decode("kith1"), Err(TicketError::Damaged));
        assert_eq!(
            TicketError::Damaged.to_string(),
            "the ticket was altered or mistyped: copy it again"
        );
    }

    /// Exhaustive for one ticket: every substitution and every swap of two neighbours.
    #[test]
    fn every_single_substitution_and_swap_is_rejected() {
        let text = ticket().encode();
        let alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        let chars: Vec<char> = text.chars().collect();
        for i in TICKET_PREFIX.len()..chars.len() {
            for c in alphabet.chars().filter(|&c| c != chars[i]) {
                let mut changed = chars.clone();
                changed[i] = c;
                let changed: String = changed.into_iter().collect();
                assert!(Ticket::decode(&changed).is_err(), "{i} -> {c}");
            }
            if i + 1 < chars.len() && chars[i] != chars[i + 1] {
                let mut swapped = chars.clone();
                swapped.swap(i, i + 1);
                let swapped: String = swapped.into_iter().collect();
                assert!(Ticket::decode(&swapped).is_err(), "swap {i}");
            }
        }
    }

    /// Builds a ticket text around arbitrary inner bytes with a valid checksum.
    fn frame(version: u8, body: &[u8]) -> String {
        let mut bytes = vec![version];
        bytes.extend_from_slice(body);
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        format!("kith1{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
    }

    #[test]
    fn other_versions_and_bad_bodies_are_named() {
        let text = ticket().encode();
        let bytes = BASE32_NOPAD_NOCASE.decode(&text.as_bytes()[5..]).unwrap();
        let body = &bytes[1..bytes.len() - CHECKSUM_LEN];

        assert_eq!(
            Ticket::decode(&frame(2, body)),
            Err(TicketError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Ticket::decode(&frame(1, &body[..body.len() - 1])),
            Err(TicketError::Malformed(_))
        ));
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(
            Ticket::decode(&frame(1, &longer)),
            Err(TicketError::Malformed(_))
        ));
        // Role 3 does not exist.
        let mut role = body.to_vec();
        let role_at = role.len() - 1 - 6;
        assert_eq!(role[role_at], 1, "member");
        role[role_at] = 3;
        assert!(matches!(
            Ticket::decode(&frame(1, &role)),
            Err(TicketError::Malformed(_))
        ));
        // An overlong varint for the expiry: same value, second spelling.
        let mut overlong = body.to_vec();
        let last = overlong.len() - 1;
        overlong[last] |= 0x80;
        overlong.push(0);
        assert!(matches!(
            Ticket::decode(&frame(1, &overlong)),
            Err(TicketError::Malformed(_))
        ));
    }

    #[test]
    fn address_limits() {
        let mut t = ticket();
        t.addrs = vec![vec![7; MAX_ADDR_LEN + 1]];
        t.addrs.extend((0..10u8).map(|i| vec![i; MAX_ADDR_LEN]));
        let decoded = Ticket::decode(&t.encode()).unwrap();
        assert_eq!(
            decoded.addrs,
            (0..8u8).map(|i| vec![i; 64]).collect::<Vec<_>>()
        );

        // A body with 9 addresses is refused even with a valid checksum.
        let body = Body {
            family: t.family,
            inviter: t.inviter,
            addrs: vec![vec![1]; MAX_ADDRS + 1],
            invite: t.invite,
            secret: t.secret,
            role: t.role,
            expires_at_ms: 0,
        };
        let text = frame(1, &postcard::to_allocvec(&body).unwrap());
        assert!(matches!(
            Ticket::decode(&text),
            Err(TicketError::Malformed(_))
        ));
    }

    #[test]
    fn the_largest_ticket_fits_the_length_cap() {
        let mut t = ticket();
        t.addrs = vec![vec![0xff; MAX_ADDR_LEN]; MAX_ADDRS];
        t.expires_at_ms = u64::MAX;
        let text = t.encode();
        assert!(text.len() < MAX_TICKET_TEXT_LEN / 2 + 100, "{}", text.len());
        assert_eq!(Ticket::decode(&text), Ok(t));
        assert_eq!(
            Ticket::decode(&"a".repeat(MAX_TICKET_TEXT_LEN + 1)),
            Err(TicketError::TooLong)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let mut t = ticket();
        t.secret = [0xab; 32];
        let debug = format!("{t:?}");
        assert!(!debug.contains("ab, ab") && !debug.contains("abab") && !debug.contains("171"));
        assert!(debug.contains("<hidden>"), "{debug}");
    }

    #[test]
    fn expiry() {
        let t = ticket();
        assert!(!t.is_expired(0));
        assert!(!t.is_expired(t.expires_at_ms - 1));
        assert!(t.is_expired(t.expires_at_ms));
        assert!(t.is_expired(u64::MAX));
    }

    #[test]
    fn invite_id_hex() {
        let id = InviteId([0x0f; 16]);
        assert_eq!(id.to_string(), "0f".repeat(16));
        assert_eq!(id.to_string().parse::<InviteId>(), Ok(id));
        assert_eq!("0F".repeat(16).parse::<InviteId>(), Err(KeyError::BadHex));
        assert_eq!(
            "0f".parse::<InviteId>(),
            Err(KeyError::BadLength {
                expected: 32,
                got: 2
            })
        );
        assert_eq!("é".repeat(16).parse::<InviteId>(), Err(KeyError::BadHex));
    }

    #[test]
    fn proof_binds_every_input() {
        let secret = [9; 32];
        let invite = InviteId([8; 16]);
        let inviter = DeviceId([7; 32]);
        let joiner = DeviceId([6; 32]);
        let x = [5; 32];
        let proof = invite_proof(&secret, &invite, &inviter, &joiner, &x);
        assert!(verify_invite_proof(
            &secret, &invite, &inviter, &joiner, &x, &proof
        ));

        let other = [0x55; 32];
        let other16 = InviteId([0x55; 16]);
        assert!(!verify_invite_proof(
            &other, &invite, &inviter, &joiner, &x, &proof
        ));
        assert!(!verify_invite_proof(
            &secret, &other16, &inviter, &joiner, &x, &proof
        ));
        assert!(!verify_invite_proof(
            &secret,
            &invite,
            &DeviceId(other),
            &joiner,
            &x,
            &proof
        ));
        assert!(!verify_invite_proof(
            &secret,
            &invite,
            &inviter,
            &DeviceId(other),
            &x,
            &proof
        ));
        assert!(!verify_invite_proof(
            &secret, &invite, &inviter, &joiner, &other, &proof
        ));
        // Swapping the two device ids is a different proof.
        assert!(!verify_invite_proof(
            &secret, &invite, &joiner, &inviter, &x, &proof
        ));
        let mut bent = proof;
        bent[31] ^= 1;
        assert!(!verify_invite_proof(
            &secret, &invite, &inviter, &joiner, &x, &bent
        ));
    }

    #[test]
    fn verification_code_is_symmetric_and_short() {
        let a = DeviceId([1; 32]);
        let b = DeviceId([2; 32]);
        let code = verification_code(&a, &b);
        assert_eq!(code, verification_code(&b, &a));
        assert_eq!(code.len(), 7);
        assert_eq!(code.as_bytes()[3], b' ');
        assert!(
            code.bytes()
                .filter(|&c| c != b' ')
                .all(|c| c.is_ascii_digit())
        );
        assert_ne!(code, verification_code(&a, &DeviceId([3; 32])));
    }
}
