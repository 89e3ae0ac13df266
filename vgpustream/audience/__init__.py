"""The viewers of one session, whatever carries their stream: admission, seats, the fan-out of packets to
their queues, the ladder that moves a viewer between renditions, and their input to the guest."""
