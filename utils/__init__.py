"""The ground floor of the AICL reproduction: infrastructure (device choice, atomic writes and JSON reading,
the one-line CLI errors), proposals and figures. It imports nothing from the rest of the project."""
