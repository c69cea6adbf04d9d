"""Classes that implement the api's backend Protocols by orchestrating the domain packages."""
