//! Entry points for the fuzz targets (`fuzz/`, built with the `fuzzing` feature): each takes
//! bytes as a peer would send them, decodes them and turns them into what the core handles,
//! as the services and the registry do. Bad input must come back as an error, never a panic,
//! an abort or an unbounded allocation; the results are dropped.

use corral_proto::v1;
use prost::Message;

use crate::service::{agent_link, scheduler};
use crate::store::codec;

/// A scheduler's Subscribe, Call or Store request; the first byte picks which.
pub fn scheduler_request(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(r) = v1::SubscribeRequest::decode(body) {
                let _ = scheduler::subscribe_event(0, &r);
            }
        }
        1 => {
            if let Ok(r) = v1::CallRequest::decode(body) {
                let _ = scheduler::call_event(r, None);
            }
        }
        _ => {
            if let Ok(r) = v1::StoreRequest::decode(body) {
                let _ = scheduler::store_event(r, None);
            }
        }
    }
}

/// A message on an agent's link: the first one (register or reregister) or a later one.
pub fn agent_message(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    if let Ok(msg) = v1::AgentMessage::decode(body) {
        if first % 2 == 0 {
            let _ = agent_link::first_event(0, msg);
        } else {
            let _ = agent_link::agent_event(0, msg);
        }
    }
}

/// Registry records, as the store hands them back on recovery. The input is a list of
/// `[key length: u8][key][value length: u16 LE][value]`.
pub fn registry(mut data: &[u8]) {
    let mut pairs = Vec::new();
    while let Some((&key_len, rest)) = data.split_first() {
        let Some((key, rest)) = rest.split_at_checked(usize::from(key_len)) else {
            break;
        };
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let Some((value, rest)) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))
        else {
            break;
        };
        pairs.push((String::from_utf8_lossy(key).into_owned(), value));
        data = rest;
    }
    let _ = codec::decode(pairs);
}
