//! A watch response passed through as it arrives, and ended on demand: `drop_watches` ends it,
//! `expire_watches` ends it after the API server's 410 `ERROR` event. JSON watch streams are
//! one event per line; the stream is forwarded up to the last complete line of what has
//! arrived (an event split across chunks waits for its end), so an ending never cuts an event
//! in half.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::watch;

use super::forward::{BoxError, ProxyBody};
use super::status;

struct State {
    frames: BodyStream<Incoming>,
    /// Line-delimited JSON: hold back a partial line, and the expiry event can be written.
    lines: bool,
    pending: BytesMut,
    drops: watch::Receiver<u64>,
    expiries: watch::Receiver<u64>,
    done: bool,
}

type Item = Result<Frame<Bytes>, BoxError>;

enum Step {
    Yield(Item),
    End,
    Again,
}

impl State {
    fn data(&mut self, data: Bytes) -> Step {
        if !self.lines {
            return Step::Yield(Ok(Frame::data(data)));
        }
        self.pending.extend_from_slice(&data);
        match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => Step::Yield(Ok(Frame::data(self.pending.split_to(i + 1).freeze()))),
            None => Step::Again,
        }
    }

    async fn step(&mut self) -> Step {
        if self.done {
            return Step::End;
        }
        tokio::select! {
            biased;
            _ = self.drops.changed() => Step::End,
            _ = self.expiries.changed() => {
                self.done = true;
                if self.lines {
                    Step::Yield(Ok(Frame::data(Bytes::from(status::expired_event()))))
                } else {
                    Step::End
                }
            }
            frame = self.frames.next() => match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.data(data),
                    Err(other) => Step::Yield(Ok(other)),
                },
                Some(Err(e)) => {
                    self.done = true;
                    Step::Yield(Err(Box::new(e)))
                }
                None => {
                    self.done = true;
                    if self.pending.is_empty() {
                        Step::End
                    } else {
                        Step::Yield(Ok(Frame::data(self.pending.split().freeze())))
                    }
                }
            },
        }
    }
}

/// The response body of a watch: `json` when the stream is line-delimited JSON. The receivers
/// are taken when the request arrives, so an ending asked for meanwhile is not missed.
pub fn body(
    upstream: Incoming,
    json: bool,
    drops: watch::Receiver<u64>,
    expiries: watch::Receiver<u64>,
) -> ProxyBody {
    let state = State {
        frames: BodyStream::new(upstream),
        lines: json,
        pending: BytesMut::new(),
        drops,
        expiries,
        done: false,
    };
    let frames = futures::stream::unfold(state, |mut state| async move {
        loop {
            match state.step().await {
                Step::Yield(item) => return Some((item, state)),
                Step::End => return None,
                Step::Again => continue,
            }
        }
    });
    StreamBody::new(frames).boxed_unsync()
}
