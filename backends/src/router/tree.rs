//! Where routes sit: their paths, checked, and the directories on the way
//! to them ("junctions").
//!
//! Junction 0 is the mount's root. Every directory between the root and a
//! route is a junction too; at INIT the router looks each one up in the
//! root backend and uses the real directory when there is one
//! (`backend_ino`), or synthesizes a read-only directory otherwise.

use super::ids::MAX_ROUTES;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Why a route's path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The path does not start with `/`.
    Relative(String),
    /// The path is `/`: the root is the mount's own backend.
    Root,
    /// The path has a `.` or `..` component.
    DotComponent(String),
    /// Two routes have the same path.
    Duplicate(String),
    /// One route lies inside another.
    Overlap {
        /// The outer route.
        outer: String,
        /// The route inside it.
        inner: String,
    },
    /// More than [`MAX_ROUTES`] routes.
    TooMany(usize),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Relative(p) => write!(
                f,
                "route path {p:?} is relative: give the path inside the mount from its root, like /data"
            ),
            RouteError::Root => f.write_str(
                "a route cannot be placed at /: the root is the mount's own backend (--source, or memory)",
            ),
            RouteError::DotComponent(p) => write!(
                f,
                "route path {p:?} has a '.' or '..' component: write it without them"
            ),
            RouteError::Duplicate(p) => write!(f, "route {p} is given twice: give each path once"),
            RouteError::Overlap { outer, inner } => write!(
                f,
                "routes overlap: {inner} lies inside route {outer}; routes cannot be nested"
            ),
            RouteError::TooMany(n) => {
                write!(f, "{n} routes given; at most {MAX_ROUTES} are supported")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// A route's place in the mount: an absolute path without `.`, `..`,
/// empty components or a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath(String);

impl RoutePath {
    /// Checks and normalizes `path` (`//a/b/` becomes `/a/b`).
    pub fn parse(path: &str) -> Result<RoutePath, RouteError> {
        if !path.starts_with('/') {
            return Err(RouteError::Relative(path.to_string()));
        }
        let mut out = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(RouteError::DotComponent(path.to_string()));
            }
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() {
            return Err(RouteError::Root);
        }
        Ok(RoutePath(out))
    }

    /// The normalized path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's names, root first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|p| !p.is_empty())
    }

    /// Whether `other` lies inside this path (or is it).
    fn contains(&self, other: &RoutePath) -> bool {
        other.0 == self.0
            || (other.0.starts_with(&self.0) && other.0.as_bytes()[self.0.len()] == b'/')
    }
}

impl fmt::Display for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that no two routes overlap (the same path, or one inside the
/// other) and that there are not too many.
pub fn check_routes<'a>(paths: impl IntoIterator<Item = &'a RoutePath>) -> Result<(), RouteError> {
    let paths: Vec<&RoutePath> = paths.into_iter().collect();
    if paths.len() > MAX_ROUTES {
        return Err(RouteError::TooMany(paths.len()));
    }
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if a.0 == b.0 {
                return Err(RouteError::Duplicate(a.0.clone()));
            }
            if a.contains(b) {
                return Err(RouteError::Overlap {
                    outer: a.0.clone(),
                    inner: b.0.clone(),
                });
            }
            if b.contains(a) {
                return Err(RouteError::Overlap {
                    outer: b.0.clone(),
                    inner: a.0.clone(),
                });
            }
        }
    }
    Ok(())
}

/// What a name in a junction leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// Another junction (its index).
    Junction(usize),
    /// A route's root (its 1-based index).
    Route(usize),
}

/// A directory on the way to one or more routes.
#[derive(Debug)]
pub struct Junction {
    /// The parent junction (0 for the root itself).
    pub parent: usize,
    /// Names under this directory that the router answers itself.
    pub children: Vec<(Box<[u8]>, Child)>,
    /// The root backend's node id of this directory, 0 while it has none
    /// (then the router synthesizes it).
    backend_ino: AtomicU64,
}

impl Junction {
    /// The root backend's node id of this directory, if it has one.
    pub fn backend_ino(&self) -> Option<u64> {
        match self.backend_ino.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Records the root backend's node id of this directory.
    pub fn set_backend_ino(&self, ino: u64) {
        self.backend_ino.store(ino, Ordering::Release)
    }

    /// What `name` leads to, if the router answers it.
    pub fn child(&self, name: &[u8]) -> Option<Child> {
        self.children
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, c)| *c)
    }
}

/// The junctions of a router, root first.
#[derive(Debug)]
pub struct Tree {
    /// Junction 0 is the mount's root.
    pub junctions: Vec<Junction>,
}

impl Tree {
    /// The tree for routes at `paths` (route `i` of the slice gets index
    /// `i + 1`); the paths must have passed [`check_routes`].
    pub fn new(paths: &[RoutePath]) -> Tree {
        let mut junctions = vec![Junction {
            parent: 0,
            children: Vec::new(),
            backend_ino: AtomicU64::new(fuselage_core::abi::FUSE_ROOT_ID),
        }];
        for (i, path) in paths.iter().enumerate() {
            let names: Vec<&str> = path.components().collect();
            let mut at = 0;
            for (depth, name) in names.iter().enumerate() {
                let last = depth + 1 == names.len();
                if last {
                    junctions[at]
                        .children
                        .push((name.as_bytes().into(), Child::Route(i + 1)));
                    break;
                }
                at = match junctions[at].child(name.as_bytes()) {
                    Some(Child::Junction(j)) => j,
                    _ => {
                        let j = junctions.len();
                        junctions.push(Junction {
                            parent: at,
                            children: Vec::new(),
                            backend_ino: AtomicU64::new(0),
                        });
                        junctions[at]
                            .children
                            .push((name.as_bytes().into(), Child::Junction(j)));
                        j
                    }
                };
            }
        }
        Tree { junctions }
    }

    /// The junction that is the root backend's directory `ino`, if any.
    #[inline]
    pub fn junction_of_backend(&self, ino: u64) -> Option<usize> {
        self.junctions
            .iter()
            .position(|j| j.backend_ino.load(Ordering::Relaxed) == ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePath {
        RoutePath::parse(s).unwrap()
    }

    #[test]
    fn paths_are_checked_and_normalized() {
        assert_eq!(p("//tmp/").as_str(), "/tmp");
        assert_eq!(
            RoutePath::parse("tmp"),
            Err(RouteError::Relative("tmp".into()))
        );
        assert_eq!(RoutePath::parse("/"), Err(RouteError::Root));
        assert_eq!(RoutePath::parse("//"), Err(RouteError::Root));
        assert!(matches!(
            RoutePath::parse("/a/../b"),
            Err(RouteError::DotComponent(_))
        ));
        assert!(matches!(
            RoutePath::parse("/a/./b"),
            Err(RouteError::DotComponent(_))
        ));
    }

    #[test]
    fn overlapping_routes_are_refused() {
        assert!(check_routes(&[p("/tmp"), p("/data"), p("/etc/resolv.conf")]).is_ok());
        assert!(check_routes(&[p("/data"), p("/database")]).is_ok());
        assert_eq!(
            check_routes(&[p("/tmp"), p("/tmp/")]),
            Err(RouteError::Duplicate("/tmp".into()))
        );
        assert!(matches!(
            check_routes(&[p("/a/b"), p("/a")]),
            Err(RouteError::Overlap { .. })
        ));
    }

    #[test]
    fn tree_has_a_junction_per_directory_on_the_way() {
        let t = Tree::new(&[p("/tmp"), p("/etc/resolv.conf"), p("/etc/x/y")]);
        assert_eq!(t.junctions.len(), 3);
        assert_eq!(t.junctions[0].child(b"tmp"), Some(Child::Route(1)));
        assert_eq!(t.junctions[0].child(b"etc"), Some(Child::Junction(1)));
        assert_eq!(t.junctions[1].child(b"resolv.conf"), Some(Child::Route(2)));
        assert_eq!(t.junctions[1].child(b"x"), Some(Child::Junction(2)));
        assert_eq!(t.junctions[2].child(b"y"), Some(Child::Route(3)));
        assert_eq!(t.junction_of_backend(1), Some(0));
        assert_eq!(t.junction_of_backend(7), None);
    }
}
