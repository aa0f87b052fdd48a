pub mod harness;
pub mod packet;
