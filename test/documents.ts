// Operations the tests send, typed by GraphQL Code Generator (npm run codegen → test/gql).
import { graphql } from "./gql/index.ts";

/** What every test reads of a typed error (any member of a result union implementing Error). */
export const CustomerFields = graphql(`
  fragment CustomerFields on Customer {
    id
    email
    name
    externalId
    metadata
    createdAt
    updatedAt
  }
`);

export const CreateCustomer = graphql(`
  mutation CreateCustomer($input: CreateCustomerInput!) {
    createCustomer(input: $input) {
      __typename
      ... on Customer {
        ...CustomerFields
      }
      ...ErrorFields
    }
  }
`);

export const UpdateCustomer = graphql(`
  mutation UpdateCustomer($id: ID!, $input: UpdateCustomerInput!) {
    updateCustomer(id: $id, input: $input) {
      __typename
      ... on Customer {
        ...CustomerFields
      }
      ...ErrorFields
    }
  }
`);

export const DeleteCustomer = graphql(`
  mutation DeleteCustomer($id: ID!) {
    deleteCustomer(id: $id) {
      __typename
      ... on Customer {
        id
      }
      ...ErrorFields
    }
  }
`);

export const GetCustomer = graphql(`
  query GetCustomer($id: ID, $externalId: String) {
    customer(id: $id, externalId: $externalId) {
      ...CustomerFields
    }
  }
`);

export const ListCustomers = graphql(`
  query ListCustomers($first: Int, $after: String, $email: String) {
    customers(first: $first, after: $after, email: $email) {
      totalCount
      edges {
        cursor
        node {
          id
          email
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const CreateSession = graphql(`
  mutation CreateSession($customerId: ID, $externalCustomerId: String, $ttlSeconds: Int) {
    createCustomerSession(customerId: $customerId, externalCustomerId: $externalCustomerId, ttlSeconds: $ttlSeconds) {
      __typename
      ... on CustomerSession {
        id
        token
        expiresAt
        customer {
          id
        }
      }
      ...ErrorFields
    }
  }
`);

export const GetCustomerState = graphql(`
  query GetCustomerState($customerId: ID, $externalCustomerId: String) {
    customerState(customerId: $customerId, externalCustomerId: $externalCustomerId) {
      customer {
        id
        email
      }
    }
  }
`);

export const CustomerStateChanged = graphql(`
  subscription CustomerStateChanged($customerId: ID, $externalCustomerId: String) {
    customerStateChanged(customerId: $customerId, externalCustomerId: $externalCustomerId) {
      customer {
        id
        name
        email
      }
    }
  }
`);

export const CreateMeter = graphql(`
  mutation CreateMeter($input: CreateMeterInput!) {
    createMeter(input: $input) {
      __typename
      ... on Meter {
        id
        name
        filter
        aggregation {
          func
          property
        }
        negativeValues
      }
      ... on LimitExceededError {
        limit
      }
      ...ErrorFields
    }
  }
`);

export const UpdateMeter = graphql(`
  mutation UpdateMeter($id: ID!, $input: UpdateMeterInput!) {
    updateMeter(id: $id, input: $input) {
      __typename
      ... on Meter {
        id
        name
      }
      ...ErrorFields
    }
  }
`);

export const ArchiveMeter = graphql(`
  mutation ArchiveMeter($id: ID!) {
    archiveMeter(id: $id) {
      __typename
      ... on Meter {
        id
        archivedAt
      }
    }
  }
`);

export const ListMeters = graphql(`
  query ListMeters($includeArchived: Boolean) {
    meters(includeArchived: $includeArchived) {
      edges {
        node {
          id
          name
        }
      }
    }
  }
`);

export const IngestEvents = graphql(`
  mutation IngestEvents($events: [EventInput!]!) {
    ingestEvents(events: $events) {
      __typename
      ... on IngestSummary {
        inserted
        duplicates
        creditedUnits
        ignoredValues
      }
      ...ErrorFields
    }
  }
`);

export const GetCustomerMeter = graphql(`
  query GetCustomerMeter($customerId: ID, $externalCustomerId: String, $meterId: ID!) {
    customerMeter(customerId: $customerId, externalCustomerId: $externalCustomerId, meterId: $meterId) {
      id
      consumedUnits
      creditedUnits
      balance
      version
      meter {
        id
      }
    }
  }
`);

export const ListCustomerMeters = graphql(`
  query ListCustomerMeters($customerId: ID, $meterId: ID, $first: Int) {
    customerMeters(customerId: $customerId, meterId: $meterId, first: $first) {
      edges {
        node {
          balance
          customer {
            id
          }
          meter {
            id
          }
        }
      }
    }
  }
`);

export const FullCustomerState = graphql(`
  query FullCustomerState($customerId: ID, $externalCustomerId: String) {
    customerState(customerId: $customerId, externalCustomerId: $externalCustomerId) {
      customer {
        id
        email
      }
      meters {
        balance
        consumedUnits
        creditedUnits
        meter {
          id
          name
        }
      }
    }
  }
`);

export const ListEvents = graphql(`
  query ListEvents($customerId: ID, $meterId: ID, $name: String, $from: DateTime, $to: DateTime, $first: Int, $after: String) {
    events(customerId: $customerId, meterId: $meterId, name: $name, from: $from, to: $to, first: $first, after: $after) {
      edges {
        node {
          externalId
          name
          customer {
            id
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const GrantCredits = graphql(`
  mutation GrantCredits($input: GrantCreditsInput!) {
    grantCredits(input: $input) {
      __typename
      ... on CreditGrant {
        id
        units
        remainingUnits
      }
      ...ErrorFields
    }
  }
`);

export const CustomerMeterUpdated = graphql(`
  subscription CustomerMeterUpdated($customerId: ID, $externalCustomerId: String, $meterId: ID) {
    customerMeterUpdated(customerId: $customerId, externalCustomerId: $externalCustomerId, meterId: $meterId) {
      balance
      consumedUnits
      creditedUnits
      version
      meter {
        id
      }
    }
  }
`);

export const CustomerStateWithMeters = graphql(`
  subscription CustomerStateWithMeters($customerId: ID) {
    customerStateChanged(customerId: $customerId) {
      meters {
        balance
        meter {
          id
        }
      }
    }
  }
`);

export const CreateBenefit = graphql(`
  mutation CreateBenefit($input: CreateBenefitInput!) {
    createBenefit(input: $input) {
      __typename
      ... on Benefit {
        id
        units
        rollover
      }
      ...ErrorFields
    }
  }
`);

export const CreateProduct = graphql(`
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) {
      __typename
      ... on Product {
        id
        isRecurring
        benefits {
          id
        }
        prices {
          type
          unitAmount
          capAmount
        }
      }
      ...ErrorFields
    }
  }
`);

export const UpdateProduct = graphql(`
  mutation UpdateProduct($id: ID!, $input: UpdateProductInput!) {
    updateProduct(id: $id, input: $input) {
      __typename
      ... on Product {
        id
        benefits {
          id
        }
      }
      ...ErrorFields
    }
  }
`);

export const ArchiveProduct = graphql(`
  mutation ArchiveProduct($id: ID!) {
    archiveProduct(id: $id) {
      __typename
      ... on Product {
        id
        archivedAt
      }
      ...ErrorFields
    }
  }
`);

export const CreateOrder = graphql(`
  mutation CreateOrder($input: CreateOrderInput!) {
    createOrder(input: $input) {
      __typename
      ... on Order {
        id
        status
        subscription {
          id
          currentPeriodStart
          currentPeriodEnd
        }
      }
      ...ErrorFields
    }
  }
`);

export const ErrorFields = graphql(`
  fragment ErrorFields on Error {
    code
    field
    message
  }
`);

export const CancelSubscription = graphql(`
  mutation CancelSubscription($input: CancelSubscriptionInput!) {
    cancelSubscription(input: $input) {
      __typename
      ... on CustomerSubscription {
        id
        status
        cancelAtPeriodEnd
        canceledAt
        endedAt
      }
      ...ErrorFields
    }
  }
`);

/** The deprecated loose form, kept working for one release. */
export const CancelSubscriptionLoose = graphql(`
  mutation CancelSubscriptionLoose($id: ID, $atPeriodEnd: Boolean) {
    cancelSubscription(id: $id, atPeriodEnd: $atPeriodEnd) {
      __typename
      ... on CustomerSubscription {
        id
        status
        cancelAtPeriodEnd
        endedAt
      }
      ...ErrorFields
    }
  }
`);

export const RenewSubscription = graphql(`
  mutation RenewSubscription($id: ID!, $idempotencyKey: String) {
    renewSubscription(id: $id, idempotencyKey: $idempotencyKey) {
      __typename
      ... on CustomerSubscription {
        id
        currentPeriodStart
        currentPeriodEnd
      }
      ...ErrorFields
    }
  }
`);

export const RefundOrder = graphql(`
  mutation RefundOrder($id: ID!) {
    refundOrder(id: $id) {
      __typename
      ... on Order {
        id
        status
      }
    }
  }
`);

export const OrderFields = graphql(`
  fragment OrderFields on Order {
    id
    status
    amount
    currency
    createdAt
    refundedAt
    customer {
      id
    }
    product {
      id
    }
    subscription {
      id
      status
      currentPeriodEnd
    }
  }
`);

export const SubscriptionFields = graphql(`
  fragment SubscriptionFields on CustomerSubscription {
    id
    status
    currentPeriodStart
    currentPeriodEnd
    cancelAtPeriodEnd
    canceledAt
    endedAt
    customer {
      id
    }
    product {
      id
    }
  }
`);

export const GetOrder = graphql(`
  query GetOrder($id: ID!) {
    order(id: $id) {
      ...OrderFields
    }
  }
`);

export const OrdersOf = graphql(`
  query OrdersOf($customerId: ID, $externalCustomerId: String, $productId: ID, $first: Int, $after: String) {
    orders(customerId: $customerId, externalCustomerId: $externalCustomerId, productId: $productId, first: $first, after: $after) {
      totalCount
      edges {
        cursor
        node {
          ...OrderFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const GetCustomerSubscription = graphql(`
  query GetCustomerSubscription($id: ID!) {
    customerSubscription(id: $id) {
      ...SubscriptionFields
    }
  }
`);

export const CustomerSubscriptionsOf = graphql(`
  query CustomerSubscriptionsOf(
    $customerId: ID
    $externalCustomerId: String
    $productId: ID
    $status: CustomerSubscriptionStatus
    $first: Int
    $after: String
  ) {
    customerSubscriptions(
      customerId: $customerId
      externalCustomerId: $externalCustomerId
      productId: $productId
      status: $status
      first: $first
      after: $after
    ) {
      edges {
        node {
          ...SubscriptionFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const CustomerPurchases = graphql(`
  query CustomerPurchases($id: ID, $first: Int, $ordersAfter: String, $subscriptionsAfter: String) {
    customer(id: $id) {
      id
      orders(first: $first, after: $ordersAfter) {
        edges {
          node {
            id
            status
          }
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
      subscriptions(first: $first, after: $subscriptionsAfter) {
        edges {
          node {
            id
            status
          }
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`);

export const EntitlementState = graphql(`
  query EntitlementState($customerId: ID) {
    customerState(customerId: $customerId) {
      activeSubscriptions {
        id
        status
        product {
          id
        }
      }
      grantedBenefits {
        id
      }
      meters {
        balance
        overageUnits
        overageAmount
        meter {
          id
        }
      }
    }
  }
`);

export const GrantWithOptions = graphql(`
  mutation GrantWithOptions($input: GrantCreditsInput!) {
    grantCredits(input: $input) {
      __typename
      ... on CreditGrant {
        id
        priority
        expiresAt
      }
      ...ErrorFields
    }
  }
`);

export const CreditGrantsOf = graphql(`
  query CreditGrantsOf($customerId: ID, $meterId: ID, $first: Int, $after: String) {
    creditGrants(customerId: $customerId, meterId: $meterId, first: $first, after: $after) {
      pageInfo {
        hasNextPage
        endCursor
      }
      edges {
        node {
          id
          units
          remainingUnits
          priority
          voidedAt
          expiredAt
        }
      }
    }
  }
`);

export const LedgerOf = graphql(`
  query LedgerOf($customerId: ID, $meterId: ID, $first: Int, $after: String) {
    ledger(customerId: $customerId, meterId: $meterId, first: $first, after: $after) {
      pageInfo {
        hasNextPage
        endCursor
      }
      edges {
        node {
          kind
          units
          balanceAfter
          occurredAt
          eventCount
          grant {
            id
          }
          meter {
            id
          }
          event {
            externalId
          }
        }
      }
    }
  }
`);

export const BalanceAt = graphql(`
  query BalanceAt($customerId: ID, $meterId: ID!, $at: DateTime!) {
    balanceAt(customerId: $customerId, meterId: $meterId, at: $at)
  }
`);

export const ExpiringCredits = graphql(`
  query ExpiringCredits($customerId: ID, $meterId: ID, $within: Int!, $first: Int, $after: String) {
    expiringCredits(customerId: $customerId, meterId: $meterId, within: $within, first: $first, after: $after) {
      totalCount
      pageInfo {
        hasNextPage
        endCursor
      }
      edges {
        node {
          id
          remainingUnits
          expiresAt
        }
      }
    }
  }
`);

export const VoidCreditGrant = graphql(`
  mutation VoidCreditGrant($id: ID!) {
    voidCreditGrant(id: $id) {
      __typename
      ... on CreditGrant {
        id
        remainingUnits
        voidedAt
      }
    }
  }
`);

export const AuthorizeUsage = graphql(`
  mutation AuthorizeUsage($input: AuthorizeUsageInput!) {
    authorizeUsage(input: $input) {
      __typename
      ... on UsageAuthorization {
        allowed
        balance
        code
        replayed
      }
      ...ErrorFields
    }
  }
`);

export const ReserveUsage = graphql(`
  mutation ReserveUsage($input: ReserveUsageInput!) {
    reserveUsage(input: $input) {
      __typename
      ... on UsageReservation {
        id
        allowed
        expiresAt
        balance
        code
        reservation {
          status
          units
        }
      }
      ...ErrorFields
    }
  }
`);

export const CommitReservation = graphql(`
  mutation CommitReservation($id: ID!, $units: Decimal!) {
    commitReservation(id: $id, units: $units) {
      __typename
      ... on Reservation {
        id
        status
        units
        committedUnits
      }
      ... on InsufficientCreditsError {
        available
      }
      ...ErrorFields
    }
  }
`);

export const ReleaseReservation = graphql(`
  mutation ReleaseReservation($id: ID!) {
    releaseReservation(id: $id) {
      __typename
      ... on Reservation {
        id
        status
      }
      ...ErrorFields
    }
  }
`);

export const Availability = graphql(`
  query Availability($customerId: ID, $meterId: ID!) {
    customerMeter(customerId: $customerId, meterId: $meterId) {
      balance
      creditedUnits
      consumedUnits
      heldUnits
      availableUnits
    }
  }
`);

export const AvailabilityUpdated = graphql(`
  subscription AvailabilityUpdated($customerId: ID, $meterId: ID) {
    customerMeterUpdated(customerId: $customerId, meterId: $meterId) {
      balance
      heldUnits
      availableUnits
      version
    }
  }
`);

export const IngestStrict = graphql(`
  mutation IngestStrict($events: [EventInput!]!) {
    ingestEvents(events: $events, mode: STRICT) {
      __typename
      ... on IngestSummary {
        inserted
        duplicates
        creditedUnits
        ignoredValues
      }
      ... on InsufficientCreditsError {
        customerId
        meterId
        balance
        available
      }
      ...ErrorFields
    }
  }
`);

export const GrantScheduled = graphql(`
  mutation GrantScheduled($input: GrantCreditsInput!) {
    grantCredits(input: $input) {
      __typename
      ... on CreditGrant {
        id
        remainingUnits
        effectiveAt
        creditedAt
        expiresAt
        expiredAt
      }
      ...ErrorFields
    }
  }
`);

export const GrantStates = graphql(`
  query GrantStates($customerId: ID, $meterId: ID) {
    creditGrants(customerId: $customerId, meterId: $meterId) {
      edges {
        node {
          id
          remainingUnits
          creditedAt
          expiredAt
        }
      }
    }
  }
`);

export const ReservationsOf = graphql(`
  query ReservationsOf($customerId: ID, $status: ReservationStatus) {
    reservations(customerId: $customerId, status: $status) {
      edges {
        node {
          id
          status
          units
        }
      }
    }
  }
`);

export const AccessTokenFields = graphql(`
  fragment AccessTokenFields on AccessToken {
    id
    kind
    prefix
    name
    customer {
      id
    }
    expiresAt
    revokedAt
    createdAt
  }
`);

export const ListAccessTokens = graphql(`
  query ListAccessTokens($kind: AccessTokenKind, $customerId: ID, $externalCustomerId: String, $active: Boolean) {
    accessTokens(kind: $kind, customerId: $customerId, externalCustomerId: $externalCustomerId, active: $active) {
      edges {
        node {
          ...AccessTokenFields
        }
      }
    }
  }
`);

export const CreateAccessToken = graphql(`
  mutation CreateAccessToken($name: String) {
    createAccessToken(name: $name) {
      __typename
      ... on CreatedAccessToken {
        token
        accessToken {
          ...AccessTokenFields
        }
      }
      ...ErrorFields
    }
  }
`);

export const RevokeAccessToken = graphql(`
  mutation RevokeAccessToken($id: ID!) {
    revokeAccessToken(id: $id) {
      __typename
      ... on AccessToken {
        ...AccessTokenFields
      }
      ...ErrorFields
    }
  }
`);

export const SessionCatalog = graphql(`
  query SessionCatalog {
    meters {
      edges {
        node {
          id
          name
          filter
        }
      }
    }
    products {
      edges {
        node {
          id
        }
      }
    }
    benefits {
      edges {
        node {
          id
        }
      }
    }
  }
`);

export const CatalogItem = graphql(`
  query CatalogItem($meterId: ID!, $productId: ID!, $benefitId: ID!) {
    meter(id: $meterId) {
      id
      filter
    }
    product(id: $productId) {
      id
    }
    benefit(id: $benefitId) {
      id
    }
  }
`);

export const CustomerMeterIds = graphql(`
  query CustomerMeterIds {
    customerMeters {
      edges {
        node {
          meter {
            id
            filter
          }
        }
      }
    }
  }
`);

// The input forms of issue 14's naming convention (the older documents above use the deprecated loose forms).
export const CustomerByExternalId = graphql(`
  query CustomerByExternalId($externalCustomerId: String) {
    customer(externalCustomerId: $externalCustomerId) {
      ...CustomerFields
    }
  }
`);

export const UpdateCustomerByInput = graphql(`
  mutation UpdateCustomerByInput($input: UpdateCustomerInput!) {
    updateCustomer(input: $input) {
      __typename
      ... on Customer {
        ...CustomerFields
      }
      ...ErrorFields
    }
  }
`);

export const DeleteCustomerByInput = graphql(`
  mutation DeleteCustomerByInput($input: DeleteCustomerInput!) {
    deleteCustomer(input: $input) {
      __typename
      ... on Customer {
        id
      }
      ...ErrorFields
    }
  }
`);

export const CreateSessionByInput = graphql(`
  mutation CreateSessionByInput($input: CreateCustomerSessionInput!) {
    createCustomerSession(input: $input) {
      __typename
      ... on CustomerSession {
        token
        customer {
          id
        }
      }
      ...ErrorFields
    }
  }
`);

export const IngestEventsByInput = graphql(`
  mutation IngestEventsByInput($input: IngestEventsInput!) {
    ingestEvents(input: $input) {
      __typename
      ... on IngestSummary {
        inserted
        duplicates
      }
      ...ErrorFields
    }
  }
`);

export const CommitReservationByInput = graphql(`
  mutation CommitReservationByInput($input: CommitReservationInput!) {
    commitReservation(input: $input) {
      __typename
      ... on Reservation {
        id
        status
      }
      ...ErrorFields
    }
  }
`);

export const CreateAccessTokenByInput = graphql(`
  mutation CreateAccessTokenByInput($input: CreateAccessTokenInput!) {
    createAccessToken(input: $input) {
      __typename
      ... on CreatedAccessToken {
        token
      }
      ...ErrorFields
    }
  }
`);

export const UpdateMeterByInput = graphql(`
  mutation UpdateMeterByInput($input: UpdateMeterInput!) {
    updateMeter(input: $input) {
      __typename
      ... on Meter {
        id
        name
      }
      ...ErrorFields
    }
  }
`);

export const GrantKinds = graphql(`
  query GrantKinds($customerId: ID, $meterId: ID) {
    creditGrants(customerId: $customerId, meterId: $meterId) {
      edges {
        node {
          source
        }
      }
    }
    ledger(customerId: $customerId, meterId: $meterId) {
      edges {
        node {
          kind
        }
      }
    }
  }
`);

export const DeprecatedArguments = graphql(`
  query DeprecatedArguments {
    __schema {
      queryType {
        fields {
          name
          args(includeDeprecated: true) {
            name
            isDeprecated
            deprecationReason
          }
        }
      }
      mutationType {
        fields {
          name
          args(includeDeprecated: true) {
            name
            isDeprecated
          }
        }
      }
    }
  }
`);

// Webhooks and balance alerts (issue 15)
export const CreateWebhookEndpoint = graphql(`
  mutation CreateWebhookEndpoint($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) {
      __typename
      ... on CreatedWebhookEndpoint {
        secret
        endpoint {
          id
          url
          eventTypes
          status
        }
      }
      ...ErrorFields
    }
  }
`);

export const RotateWebhookSecret = graphql(`
  mutation RotateWebhookSecret($id: ID!, $keepPreviousHours: Int) {
    rotateWebhookSecret(id: $id, keepPreviousHours: $keepPreviousHours) {
      __typename
      ... on RotatedWebhookSecret {
        secret
        previousSecretExpiresAt
        endpoint {
          id
        }
      }
      ...ErrorFields
    }
  }
`);

export const UpdateWebhookEndpoint = graphql(`
  mutation UpdateWebhookEndpoint($id: ID!, $input: UpdateWebhookEndpointInput!) {
    updateWebhookEndpoint(id: $id, input: $input) {
      __typename
      ... on WebhookEndpoint {
        id
        status
        disabledReason
      }
      ...ErrorFields
    }
  }
`);

export const DeleteWebhookEndpoint = graphql(`
  mutation DeleteWebhookEndpoint($id: ID!) {
    deleteWebhookEndpoint(id: $id) {
      __typename
      ... on WebhookEndpoint {
        id
      }
      ...ErrorFields
    }
  }
`);

export const WebhookEndpoints = graphql(`
  query WebhookEndpoints {
    webhookEndpoints(first: 100) {
      edges {
        node {
          id
          url
          description
          eventTypes
          status
          disabledAt
          disabledReason
          failingSince
        }
      }
    }
  }
`);

export const WebhookDeliveries = graphql(`
  query WebhookDeliveries($endpointId: ID, $status: WebhookDeliveryStatus, $first: Int) {
    webhookDeliveries(endpointId: $endpointId, status: $status, first: $first) {
      edges {
        node {
          id
          webhookId
          eventType
          sequence
          status
          attempts
          lastResponseStatus
          nextAttemptAt
        }
      }
    }
  }
`);

export const RedeliverWebhook = graphql(`
  mutation RedeliverWebhook($id: ID!) {
    redeliverWebhook(id: $id) {
      __typename
      ... on WebhookDelivery {
        id
        status
      }
      ...ErrorFields
    }
  }
`);

export const SetBalanceAlert = graphql(`
  mutation SetBalanceAlert($input: SetBalanceAlertInput!) {
    setBalanceAlert(input: $input) {
      __typename
      ... on SetBalanceAlertPayload {
        rule {
          id
          lowBalanceUnits
          expiringWithinDays
        }
      }
      ...ErrorFields
    }
  }
`);

export const BalanceAlerts = graphql(`
  subscription BalanceAlerts($customerId: ID, $externalCustomerId: String, $meterId: ID) {
    balanceAlerts(customerId: $customerId, externalCustomerId: $externalCustomerId, meterId: $meterId) {
      id
      type
      customer {
        id
      }
      meter {
        id
      }
      balance
      availableUnits
      threshold
      occurredAt
    }
  }
`);

// The customer portal and widget (test/portal.test.ts): a session with its portal link, and a balance with
// every figure the portal shows.
export const PortalSession = graphql(`
  mutation PortalSession($customerId: ID!, $ttlSeconds: Int) {
    createCustomerSession(customerId: $customerId, ttlSeconds: $ttlSeconds) {
      __typename
      ... on CustomerSession {
        id
        token
        portalUrl
      }
    }
  }
`);

export const PortalBalance = graphql(`
  query PortalBalance($customerId: ID!, $meterId: ID!) {
    customerMeter(customerId: $customerId, meterId: $meterId) {
      creditedUnits
      consumedUnits
      availableUnits
      heldUnits
    }
  }
`);

export const CreditSystemFields = graphql(`
  fragment CreditSystemFields on Meter {
    id
    name
    creditSystem
    creditRates {
      meter {
        id
      }
      creditsPerUnit
      effectiveAt
    }
  }
`);

export const CreateCreditSystem = graphql(`
  mutation CreateCreditSystem($input: CreateCreditSystemInput!) {
    createCreditSystem(input: $input) {
      __typename
      ...CreditSystemFields
      ...ErrorFields
    }
  }
`);

export const SetCreditRate = graphql(`
  mutation SetCreditRate($input: SetCreditRateInput!) {
    setCreditRate(input: $input) {
      __typename
      ...CreditSystemFields
      ...ErrorFields
    }
  }
`);

export const RatedLedger = graphql(`
  query RatedLedger($customerId: ID, $meterId: ID, $first: Int) {
    ledger(customerId: $customerId, meterId: $meterId, first: $first) {
      edges {
        node {
          kind
          units
          balanceAfter
          eventCount
          creditsPerUnit
          ratedUnits
          ratedBalanceAfter
          meter {
            id
          }
          ratedMeter {
            id
          }
        }
      }
    }
  }
`);

export const SessionBalances = graphql(`
  query SessionBalances {
    customerMeters(first: 50) {
      edges {
        node {
          balance
          consumedUnits
          meter {
            id
            creditSystem
            creditSystemId
          }
        }
      }
    }
  }
`);

export const AutoTopUpFields = graphql(`
  fragment AutoTopUpFields on AutoTopUp {
    id
    belowUnits
    productId
    maxPerMonth
    armed
    customer {
      id
    }
    meter {
      id
    }
  }
`);

export const SetAutoTopUp = graphql(`
  mutation SetAutoTopUp($input: SetAutoTopUpInput!) {
    setAutoTopUp(input: $input) {
      __typename
      ...AutoTopUpFields
      ...ErrorFields
    }
  }
`);

export const RemoveAutoTopUp = graphql(`
  mutation RemoveAutoTopUp($input: RemoveAutoTopUpInput!) {
    removeAutoTopUp(input: $input) {
      __typename
      ...AutoTopUpFields
      ...ErrorFields
    }
  }
`);

export const TopUpAlerts = graphql(`
  subscription TopUpAlerts($customerId: ID, $meterId: ID) {
    balanceAlerts(customerId: $customerId, meterId: $meterId) {
      id
      type
      availableUnits
      threshold
      productId
      idempotencyKey
    }
  }
`);

export const ReserveRated = graphql(`
  mutation ReserveRated($input: ReserveUsageInput!) {
    reserveUsage(input: $input) {
      __typename
      ... on UsageReservation {
        allowed
        balance
        code
        reservation {
          id
          status
          units
          credits
          creditsPerUnit
          meter {
            id
          }
          creditSystem {
            id
          }
        }
      }
      ...ErrorFields
    }
  }
`);

export const ReservationsOfMeter = graphql(`
  query ReservationsOfMeter($customerId: ID, $meterId: ID, $status: ReservationStatus) {
    reservations(customerId: $customerId, meterId: $meterId, status: $status) {
      totalCount
      edges {
        node {
          id
          units
          credits
        }
      }
    }
  }
`);
