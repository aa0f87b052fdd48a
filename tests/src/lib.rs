pub mod harness;
pub mod netns;
pub mod packet;
