pub mod harness;
pub mod netns;
