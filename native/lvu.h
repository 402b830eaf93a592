// libvfio-user's C headers, made digestible for C++ (they use C11's
// _Static_assert, which is not a C++ keyword).
#pragma once

#define _Static_assert static_assert
#include <vfio-user/libvfio-user.h>
#undef _Static_assert
