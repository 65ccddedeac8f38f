/** A library user's module: the API packages of io.biostack are all it sees. */
module consumer {
    requires io.biostack;
}
