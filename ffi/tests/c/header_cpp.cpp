// ringfort.h compiles as C++ (alone, twice, and beside ringfort.hpp) and links as C.
#include "ringfort.h"
#include "ringfort.h"
#include "ringfort.hpp"

#include <cstring>

static_assert(RF_OK == 0, "RF_OK is 0");

int main() {
    rf_peer peer{};
    return static_cast<int>(peer.port) + (std::strlen(rf_version()) == 0);
}
