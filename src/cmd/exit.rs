//! What an error means for the process's exit status, decided in one scan of its chain:
//! 2 for bad input found before anything ran, 130 for an interruption, 1 for the rest,
//! and 0 (quietly) when stdout was closed under us (`kabench … | head`).
//!
//! The error types that mean bad input or an interruption are named once, in
//! [`EXIT_CLASSES`]: the modules that raise them return them as they are, and only
//! the process's exit status reads the class.

use std::error::Error;

/// Marks bad input found before anything ran (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Marks a run that Ctrl-C stopped (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; the run folder {0} is complete up to the interruption")]
pub struct Interrupted(pub String);

/// The class of an error, in the order they win: an error that is bad input anywhere
/// in its chain exits 2 even where an interruption is also named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// stdout went away: the output was read as far as it was wanted (exit 0).
    BrokenPipe,
    /// The run failed (exit 1).
    Failed,
    /// Ctrl-C or SIGTERM (exit 130).
    Interrupted,
    /// Bad input; nothing was sent (exit 2).
    BadInput,
}

impl Exit {
    /// The process's exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::BrokenPipe => 0,
            Exit::Failed => 1,
            Exit::Interrupted => 130,
            Exit::BadInput => 2,
        }
    }

    /// The class of `error`: its own, or the strongest one in its chain.
    pub fn of(error: &anyhow::Error) -> Exit {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return Exit::BrokenPipe;
        }
        error
            .chain()
            .filter_map(|cause| {
                EXIT_CLASSES
                    .iter()
                    .find(|(is, _)| is(cause))
                    .map(|(_, exit)| *exit)
            })
            .max()
            .unwrap_or(Exit::Failed)
    }
}

type Is = fn(&(dyn Error + 'static)) -> bool;

fn is<T: Error + 'static>(cause: &(dyn Error + 'static)) -> bool {
    cause.is::<T>()
}

/// The error types whose class is not "failed": the exit-code table of the README.
const EXIT_CLASSES: &[(Is, Exit)] = &[
    (is::<BadInput>, Exit::BadInput),
    (is::<crate::plan::PlanError>, Exit::BadInput),
    (is::<crate::scenario::ScenarioError>, Exit::BadInput),
    (is::<crate::units::ParseError>, Exit::BadInput),
    (is::<crate::run::MissingModels>, Exit::BadInput),
    (is::<crate::folder::RunFolderExists>, Exit::BadInput),
    (is::<crate::folder::RunFolderNotEmpty>, Exit::BadInput),
    (is::<crate::folder::RunFolderUnwritable>, Exit::BadInput),
    (is::<crate::report::compare::NotComparable>, Exit::BadInput),
    (is::<crate::fleet::merge::NotMergeable>, Exit::BadInput),
    (is::<Interrupted>, Exit::Interrupted),
    (is::<crate::run::StoppedBeforeStart>, Exit::Interrupted),
    (is::<crate::doctor::Interrupted>, Exit::Interrupted),
];

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_strongest_class_in_the_chain_decides() {
        let failed = anyhow::anyhow!("the run failed");
        assert_eq!(Exit::of(&failed).code(), 1);
        let bad = Err::<(), _>(BadInput("no".into()))
            .context("reading")
            .unwrap_err();
        assert_eq!(Exit::of(&bad).code(), 2);
        let stopped = anyhow::Error::new(Interrupted("x".into()));
        assert_eq!(Exit::of(&stopped).code(), 130);
        let both = anyhow::Error::new(BadInput("no".into())).context(Interrupted("x".into()));
        assert_eq!(Exit::of(&both), Exit::BadInput);
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(Exit::of(&pipe).code(), 0);
        let parse = crate::units::parse_bytes("lots").unwrap_err();
        assert_eq!(Exit::of(&anyhow::Error::new(parse)).code(), 2);
    }
}
