//! Small things every layer uses: clocks, protocol names, error text.
