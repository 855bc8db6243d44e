// Operations the tests send, typed by GraphQL Code Generator (npm run codegen → test/gql).
import { graphql } from "./gql/index.ts";

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
      ... on Error {
        code
        field
        message
      }
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
      ... on Error {
        code
        field
        message
      }
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
      ... on Error {
        code
        field
      }
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
        token
        expiresAt
        customer {
          id
        }
      }
      ... on Error {
        code
        field
      }
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
