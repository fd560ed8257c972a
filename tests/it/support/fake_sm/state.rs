//! What the test's handle and the server share: the store, the knobs a test
//! turns (faults, latency, holds) and the records it reads back (calls,
//! request bodies, user agents). Each request's fate is decided in one go,
//! under the lock, when it arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use super::store::Store;
use super::wire::{ApiError, SERIALIZATION};
use super::{Fault, Hold, Op};

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not make every later call panic too.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) store: Store,
    pub(super) calls: HashMap<Op, usize>,
    pub(super) faults: HashMap<Op, VecDeque<(Fault, usize)>>,
    pub(super) latency: HashMap<Op, Duration>,
    /// Added to the latency of answers involving these secrets.
    pub(super) secret_latency: HashMap<String, Duration>,
    pub(super) holds: Vec<Arc<Hold>>,
    pub(super) requests: Vec<(Op, Value)>,
    pub(super) user_agents: Vec<String>,
    /// Set: GetSecretValue and DescribeSecret answer AccessDenied for every other name, as a
    /// role whose IAM policy names its secrets is answered (existing or not).
    pub(super) readable_only: Option<Vec<String>>,
}

/// What to do with one request, decided atomically when it arrives.
pub(super) struct Plan {
    pub(super) latency: Duration,
    pub(super) holds: Vec<Arc<Hold>>,
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    Answer(Result<Value, ApiError>),
    /// These bytes with this status, whatever they are: an answer no SDK can parse.
    Raw(StatusCode, Vec<u8>),
    /// A 200 announcing these bytes, of which only the first half is sent before a reset.
    ResetMidBody(Vec<u8>),
    Drop,
}

impl State {
    fn take_fault(&mut self, op: Op) -> Option<Fault> {
        let queue = self.faults.get_mut(&op)?;
        let (fault, remaining) = queue.front_mut()?;
        let fault = *fault;
        if *remaining != usize::MAX {
            *remaining -= 1;
            if *remaining == 0 {
                queue.pop_front();
            }
        }
        Some(fault)
    }

    fn denied_by_name(&self, op: Op, body: Option<&Value>) -> Option<Fault> {
        let readable = self.readable_only.as_ref()?;
        let by_name = matches!(op, Op::GetSecretValue | Op::DescribeSecret);
        let id = body?.get("SecretId")?.as_str()?;
        (by_name && !readable.iter().any(|name| name == id)).then_some(Fault::AccessDenied)
    }

    pub(super) fn admit(&mut self, op: Op, body: Option<Value>) -> Plan {
        *self.calls.entry(op).or_default() += 1;
        self.requests
            .push((op, body.clone().unwrap_or(Value::Null)));
        let fault = self
            .take_fault(op)
            .or_else(|| self.denied_by_name(op, body.as_ref()));
        let mut involved = Vec::new();
        let answer = match &body {
            Some(Value::Object(body)) => self.store.answer(op, body, &mut involved),
            Some(_) => Err(ApiError::new(
                SERIALIZATION,
                "Start of structure or map found where not expected.",
            )),
            None => Err(ApiError::new(
                SERIALIZATION,
                "The request body is not valid JSON.",
            )),
        };
        let slowest = involved
            .iter()
            .filter_map(|name| self.secret_latency.get(name))
            .max()
            .copied()
            .unwrap_or_default();
        let latency = self.latency.get(&op).copied().unwrap_or_default() + slowest;
        let holds = self
            .holds
            .iter()
            .filter(|hold| involved.contains(&hold.name))
            .cloned()
            .collect();
        let outcome = match fault {
            None => Outcome::Answer(answer),
            Some(fault) => fault.outcome(op, answer),
        };
        Plan {
            latency,
            holds,
            outcome,
        }
    }
}
