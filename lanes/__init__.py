"""lanes: many agents, one repository, one linear main."""
