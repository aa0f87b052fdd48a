pub mod adversarial;
pub mod harness;
pub mod live;
pub mod packet;
