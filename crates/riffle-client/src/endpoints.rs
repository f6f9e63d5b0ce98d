//! Which node a call goes to. Like a client behind a load balancer with passive health checks:
//! an endpoint that failed (no connection, no answer, a 5xx) is avoided for a few seconds, since
//! a frozen node accepts connections and never answers, and a client that keeps picking it
//! stalls.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use rand::seq::IndexedRandom;

/// How long an endpoint that failed is avoided.
const AVOID_FOR: Duration = Duration::from_secs(5);

/// How calls are spread over the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// One endpoint until it fails, then the next (a consumer that keeps its node).
    Sticky,
    /// The next endpoint for every call (load spread evenly, in order).
    RoundRobin,
    /// A random endpoint for every call (load spread over every node, as chaos producers do).
    Random,
}

#[derive(Debug)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    spread: Spread,
    /// Sticky: the endpoint in use; round robin: the next one.
    current: AtomicUsize,
    /// Per endpoint, until when it is avoided.
    avoid_until: Mutex<Vec<Option<Instant>>>,
}

impl Endpoints {
    pub(crate) fn new(urls: Vec<String>, spread: Spread) -> Endpoints {
        let urls: Vec<String> = urls
            .into_iter()
            .map(|url| url.trim_end_matches('/').to_string())
            .collect();
        Endpoints {
            avoid_until: Mutex::new(vec![None; urls.len()]),
            urls,
            spread,
            current: AtomicUsize::new(0),
        }
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        self.urls.get(index).map(String::as_str).unwrap_or_default()
    }

    /// The endpoint for the next attempt of a call that already tried `tried`: one not tried
    /// and not avoided, else one not tried, else `None` (every endpoint was tried).
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let untried: Vec<usize> = (0..self.urls.len())
            .filter(|index| !tried.contains(index))
            .collect();
        if untried.is_empty() {
            return None;
        }
        let healthy: Vec<usize> = match self.avoid_until.lock() {
            Ok(avoid) => untried
                .iter()
                .copied()
                .filter(|index| avoid[*index].is_none_or(|until| until <= now))
                .collect(),
            Err(_) => untried.clone(),
        };
        let candidates = if healthy.is_empty() {
            &untried
        } else {
            &healthy
        };
        let first_from = |start: usize| {
            (0..self.urls.len())
                .map(|offset| (start + offset) % self.urls.len())
                .find(|index| candidates.contains(index))
        };
        match self.spread {
            Spread::Sticky => first_from(self.current.load(Ordering::Relaxed)),
            Spread::RoundRobin => first_from(self.current.fetch_add(1, Ordering::Relaxed)),
            Spread::Random => candidates.choose(&mut rand::rng()).copied(),
        }
    }

    /// The call to `index` failed in a way that says something about the node.
    pub(crate) fn failed(&self, index: usize) {
        if let Ok(mut avoid) = self.avoid_until.lock()
            && let Some(until) = avoid.get_mut(index)
        {
            *until = Some(Instant::now() + AVOID_FOR);
        }
        if self.spread == Spread::Sticky {
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % self.urls.len().max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(spread: Spread) -> Endpoints {
        Endpoints::new(
            vec!["http://a/".into(), "http://b".into(), "http://c".into()],
            spread,
        )
    }

    #[test]
    fn sticky_keeps_its_endpoint_until_it_fails() {
        let endpoints = endpoints(Spread::Sticky);
        assert_eq!(endpoints.url(0), "http://a");
        assert_eq!(endpoints.pick(&[]), Some(0));
        assert_eq!(endpoints.pick(&[]), Some(0));
        endpoints.failed(0);
        assert_eq!(endpoints.pick(&[]), Some(1));
        // Within a call, a failed endpoint is not tried again; after every one, none is left.
        assert_eq!(endpoints.pick(&[1]), Some(2));
        assert_eq!(
            endpoints.pick(&[1, 2]),
            Some(0),
            "avoided, but the only one left"
        );
        assert_eq!(endpoints.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn round_robin_and_random_skip_avoided_endpoints() {
        let endpoints = endpoints(Spread::RoundRobin);
        let picks: Vec<usize> = (0..4).filter_map(|_| endpoints.pick(&[])).collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        let random = self::endpoints(Spread::Random);
        random.failed(1);
        for _ in 0..50 {
            assert_ne!(random.pick(&[]), Some(1));
        }
    }
}
