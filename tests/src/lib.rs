pub mod netns;
pub mod packet;
pub mod harness;
